"""A student whose weights carry fixed masks (a parametrization, as 2:4 pruning keeps them) trains
and resumes with the masks intact: finetune needs no special case for it."""
from __future__ import annotations

import copy

import pytest

torch = pytest.importorskip("torch")
from torch.nn.utils import parametrize  # noqa: E402

from trtcompress.finetune import FinetuneConfig, finetune  # noqa: E402


class _Mask(torch.nn.Module):
    def __init__(self, mask):
        super().__init__()
        self.register_buffer("mask", mask)

    def forward(self, w):
        return w * self.mask


def _two_of_four(w):
    """Keep the 2 largest |w| in every group of 4 along the input dimension."""
    groups = w.detach().abs().reshape(w.shape[0], -1, 4)
    keep = groups.argsort(dim=-1, descending=True)[..., :2]
    mask = torch.zeros_like(groups).scatter_(-1, keep, 1.0)
    return mask.reshape(w.shape)


def _masked(teacher):
    student = copy.deepcopy(teacher)
    for m in student.modules():
        if isinstance(m, torch.nn.Linear) and m.in_features % 4 == 0:
            parametrize.register_parametrization(m, "weight", _Mask(_two_of_four(m.weight)))
    for p in student.parameters():
        p.requires_grad_(True)
    return student


def _masked_layers(model):
    return [m for m in model.modules() if parametrize.is_parametrized(m, "weight")]


def test_masks_stay_fixed_through_training_and_resume(teacher, digits, tmp_path):
    train, test = digits
    student = _masked(teacher)
    masks = [m.parametrizations.weight[0].mask.clone() for m in _masked_layers(student)]
    cfg = FinetuneConfig(steps=20, progress=False, checkpoint_dir=str(tmp_path), checkpoint_every=5)
    res = finetune(student, teacher, train, cfg.replace(steps=10), eval_data=test)
    resumed = finetune(_masked(teacher), teacher, train, cfg.replace(resume=True))
    whole = finetune(_masked(teacher), teacher, train, FinetuneConfig(steps=20, progress=False)).student
    for model in (res.student, resumed.student):
        for layer, mask in zip(_masked_layers(model), masks):
            w = layer.weight.detach()
            assert torch.equal(w * (1 - mask), torch.zeros_like(w))  # pruned weights stay zero
            groups = (w.reshape(w.shape[0], -1, 4) != 0).sum(-1)
            assert int(groups.max()) <= 2
    sa, sb = resumed.student.state_dict(), whole.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert res.report["student_accuracy_after"] >= res.report["student_accuracy_before"] - 0.01
