"""Distillation of a 2:4-pruned student (trtcompress.sparsity's masks): the pattern holds through
training, and resume is bit-identical."""
from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("trtcompress.sparsity.torch_masks")

from trtcompress.finetune import FinetuneConfig, apply_transform, finetune  # noqa: E402


def _follows_2to4(model) -> bool:
    for m in model.modules():
        if isinstance(m, torch.nn.Linear) and m.in_features % 4 == 0 and m.out_features >= 16:
            nz = (m.weight.detach().reshape(m.out_features, -1, 4) != 0).sum(-1)
            if int(nz.max()) > 2:
                return False
    return True


def test_2to4_student_keeps_its_pattern_and_resumes_exactly(teacher, digits, tmp_path):
    train, test = digits
    student, report = apply_transform("2to4", teacher)
    assert _follows_2to4(student)
    cfg = FinetuneConfig(steps=16, progress=False, seed=1)
    whole = finetune(student, teacher, train, cfg, eval_data=test)
    assert _follows_2to4(whole.student)
    assert whole.report["student_accuracy_after"] >= whole.report["student_accuracy_before"] - 0.01
    ck = str(tmp_path / "ck")
    finetune(apply_transform("2to4", teacher)[0], teacher, train, cfg.replace(steps=7, checkpoint_dir=ck))
    resumed = finetune(apply_transform("2to4", teacher)[0], teacher, train, cfg.replace(checkpoint_dir=ck, resume=True)).student
    sa, sb = resumed.state_dict(), whole.student.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
