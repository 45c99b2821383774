"""Torch 2:4 masks: held through training by any optimizer, restored on resume, kept by export."""
from __future__ import annotations

import numpy as np
import pytest

from trtcompress.sparsity.masks import is_2to4

pytestmark = pytest.mark.torch


def _net():
    import torch

    torch.manual_seed(0)
    return torch.nn.Sequential(
        torch.nn.Conv2d(1, 32, 3), torch.nn.ReLU(),
        torch.nn.Conv2d(32, 32, 3, groups=2), torch.nn.ReLU(),
        torch.nn.Conv2d(32, 64, 3), torch.nn.ReLU(),
        torch.nn.Flatten(), torch.nn.Linear(64 * 4 * 4, 64), torch.nn.ReLU(), torch.nn.Linear(64, 10),
    )


def _train(model, opt, steps=4):
    import torch

    model.train()
    for _ in range(steps):
        x, y = torch.randn(8, 1, 10, 10), torch.randint(0, 10, (8,))
        loss = torch.nn.functional.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()


@pytest.mark.parametrize("optimizer", ["sgd", "adamw"])
def test_masks_hold_through_training(optimizer):
    import torch

    from trtcompress.sparsity.torch_masks import apply_2to4

    model = _net()
    masks = apply_2to4(model)
    assert masks.names == ["4", "7"]
    assert "grouped" in masks.skipped["2"] and "multiple of 4" in masks.skipped["0"] and "min_channels" in masks.skipped["9"]
    before = {n: masks.mask(n).clone() for n in masks.names}
    opt = (
        torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-3)
        if optimizer == "sgd"
        else torch.optim.AdamW(model.parameters(), lr=1e-2, weight_decay=1e-2)
    )
    w_before = model[4].weight.detach().clone()
    _train(model, opt)
    assert masks.check() == []
    assert not torch.equal(model[4].weight, w_before)  # kept weights did train
    for n in masks.names:
        assert torch.equal(masks.mask(n), before[n])
    assert is_2to4(model[4].weight.detach().numpy(), 1) and is_2to4(model[7].weight.detach().numpy(), 1)


def test_dense_state_dict_is_re_masked_in_training_and_masks_resume():
    import torch

    from trtcompress.sparsity.torch_masks import SparsityMasks, apply_2to4

    model = _net()
    dense = {k: v.clone() for k, v in model.state_dict().items()}
    masks = apply_2to4(model)
    saved = masks.state_dict()
    # a dense load_state_dict breaks the pattern; the next training forward restores it
    model.load_state_dict(dense)
    assert masks.check() == ["4", "7"]
    model.train()
    model(torch.randn(2, 1, 10, 10))
    assert masks.check() == []
    # resume: a fresh model from the pruned checkpoint re-derives the same masks from the zeros
    ckpt = model.state_dict()
    fresh = _net()
    fresh.load_state_dict(ckpt)
    again = SparsityMasks.from_zeros(fresh)
    assert again.names == masks.names
    for n in masks.names:
        assert torch.equal(again.mask(n), masks.mask(n))
    # or restores saved masks exactly
    other = SparsityMasks(fresh)
    other.load_state_dict(saved)
    assert all(torch.equal(other.mask(n), saved[n]) for n in saved)
    masks.remove()
    model.load_state_dict(dense)
    model(torch.randn(2, 1, 10, 10))
    assert masks.check() == ["4", "7"]  # no hooks any more


def test_export_of_a_masked_model_is_2to4(tmp_path):
    import torch

    from trtcompress.torch_export import ExportConfig, export_module
    from trtcompress.model_io import load_model
    from trtcompress.sparsity.inspect import inspect_layers
    from trtcompress.sparsity.torch_masks import apply_2to4

    model = _net()
    masks = apply_2to4(model)
    _train(model, torch.optim.SGD(model.parameters(), lr=0.05), steps=2)
    res = export_module(model.eval(), tmp_path / "m.onnx", ExportConfig(inputs=("x:1x1x10x10",)))
    layers = [l for l in inspect_layers(load_model(res.path)) if l.shape is not None]
    ready = [l for l in layers if l.follows_2to4]
    assert len(ready) == len(masks) == 2
    assert all(l.sparsity >= 0.5 for l in ready)
    assert masks.report()["zeros"] == sum(int(np.prod(l.shape)) // 2 for l in ready)


def test_sparse24_student_config_and_errors():
    import torch

    from trtcompress.errors import ConfigError
    from trtcompress.sparsity.torch_masks import Sparse24Config, sparse24_student

    model = _net()
    masks, report = sparse24_student(model, Sparse24Config(exclude=("7",)))
    assert masks.names == ["4"] and report["layers_pruned"] == 1
    assert report["config"]["exclude"] == ["7"]
    assert Sparse24Config.from_json(Sparse24Config(include=("4",)).to_json()) == Sparse24Config(include=("4",))
    with pytest.raises(ConfigError):
        Sparse24Config(min_channels=1)
    with pytest.raises(ConfigError, match="no layer"):
        sparse24_student(torch.nn.Sequential(torch.nn.Linear(6, 3)))
