"""The distillation loss against a hand computation."""
from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from trtcompress.finetune import distillation_loss  # noqa: E402


def _log_softmax(z):
    z = z - z.max(axis=-1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=-1, keepdims=True))


@pytest.mark.parametrize("alpha,t", [(0.5, 4.0), (0.0, 2.0), (1.0, 1.0), (0.3, 0.5)])
def test_matches_hand_computation(alpha, t):
    rng = np.random.default_rng(0)
    s, te = rng.standard_normal((5, 7)) * 3, rng.standard_normal((5, 7)) * 3
    y = rng.integers(0, 7, 5)
    ce = -np.mean(_log_softmax(s)[np.arange(5), y])
    lp_t, lp_s = _log_softmax(te / t), _log_softmax(s / t)
    kl = np.mean(np.sum(np.exp(lp_t) * (lp_t - lp_s), axis=-1))  # KL(teacher || student) per sample
    want = alpha * ce + (1 - alpha) * t * t * kl
    got = distillation_loss(torch.tensor(s), torch.tensor(te), torch.tensor(y), alpha, t)
    assert float(got) == pytest.approx(want, rel=1e-10)


def test_zero_when_student_equals_teacher_and_no_label_term():
    z = torch.randn(4, 10)
    assert float(distillation_loss(z, z.clone(), torch.zeros(4, dtype=torch.long), 0.0, 3.0)) == pytest.approx(0.0, abs=1e-7)


def test_no_gradient_into_the_teacher():
    s = torch.randn(3, 4, requires_grad=True)
    t = torch.randn(3, 4, requires_grad=True)
    distillation_loss(s, t, torch.tensor([0, 1, 2]), 0.5, 2.0).backward()
    assert s.grad is not None and t.grad is None


@pytest.mark.parametrize("kw", [dict(alpha=1.5), dict(temperature=0), dict(epochs=0), dict(steps=0), dict(lr=-1), dict(optimizer="lbfgs"), dict(schedule="step"), dict(checkpoint_every=0)])
def test_config_validation(kw):
    from trtcompress.errors import ConfigError
    from trtcompress.finetune import FinetuneConfig

    with pytest.raises(ConfigError):
        FinetuneConfig(**kw)


def test_config_json_round_trip():
    from trtcompress.finetune import FinetuneConfig

    c = FinetuneConfig(alpha=0.3, steps=100, optimizer="sgd", checkpoint_dir="ck")
    assert FinetuneConfig.from_json(c.to_json()) == c
