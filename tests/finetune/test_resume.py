"""Checkpoints and resume: an interrupted run continues to bit-identical weights."""
from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from trtcompress.errors import ConfigError  # noqa: E402
from trtcompress.finetune import FinetuneConfig, apply_transform, finetune  # noqa: E402
from crash_data import Crash, CrashAfter  # noqa: E402

TRANSFORM = "lowrank:rule=flops,flop_fraction=0.3"


def _student(teacher):
    return apply_transform(TRANSFORM, teacher)[0]


def _equal(a, b):
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


@pytest.mark.parametrize("crash,every", [(11, 4), (24, 22)])  # mid-epoch; and right after the end of epoch 0 (22 batches)
def test_resume_is_bit_identical(teacher, digits, tmp_path, crash, every):
    train, _ = digits
    cfg = FinetuneConfig(steps=26, progress=False, seed=3, optimizer="adam", schedule="cosine")
    whole = finetune(_student(teacher), teacher, train, cfg).student

    ck = tmp_path / "ck"
    with pytest.raises(Crash):
        finetune(_student(teacher), teacher, CrashAfter(train, crash), cfg.replace(checkpoint_dir=str(ck), checkpoint_every=every))
    assert (ck / "last.pt").is_file()
    assert not [p for p in ck.iterdir() if p.name.startswith(".")]  # atomic: no temporary files left
    torch.rand(100)  # an unrelated draw from the global generator between runs must not matter
    resumed = finetune(_student(teacher), teacher, train, cfg.replace(checkpoint_dir=str(ck), checkpoint_every=every, resume=True))
    assert resumed.steps == 26
    assert _equal(resumed.student, whole)


def test_extending_a_constant_schedule_run(teacher, digits, tmp_path):
    train, _ = digits
    cfg = FinetuneConfig(steps=12, progress=False)
    whole = finetune(_student(teacher), teacher, train, cfg).student
    finetune(_student(teacher), teacher, train, cfg.replace(steps=7, checkpoint_dir=str(tmp_path)))
    more = finetune(_student(teacher), teacher, train, cfg.replace(checkpoint_dir=str(tmp_path), resume=True))
    assert _equal(more.student, whole)


def test_different_seed_differs(teacher, digits):
    train, _ = digits
    a = finetune(_student(teacher), teacher, train, FinetuneConfig(steps=5, progress=False, seed=0)).student
    b = finetune(_student(teacher), teacher, train, FinetuneConfig(steps=5, progress=False, seed=1)).student
    assert not _equal(a, b)


def test_resume_with_other_settings_is_refused(teacher, digits, tmp_path):
    train, _ = digits
    cfg = FinetuneConfig(steps=3, progress=False, checkpoint_dir=str(tmp_path))
    finetune(_student(teacher), teacher, train, cfg)
    with pytest.raises(ConfigError, match="lr"):
        finetune(_student(teacher), teacher, train, cfg.replace(lr=0.1, resume=True, steps=5))


def test_resume_needs_a_checkpoint_dir():
    with pytest.raises(ConfigError):
        FinetuneConfig(resume=True)
