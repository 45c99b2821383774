"""Distillation recovers the accuracy of a factorised student on real data (scikit-learn digits)."""
from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from trtcompress.finetune import FinetuneConfig, apply_transform, evaluate, finetune  # noqa: E402


def test_distillation_recovers_a_factorised_student(teacher, digits):
    train, test = digits
    acc_teacher = evaluate(teacher, test)
    assert acc_teacher > 0.95
    student, rep = apply_transform("lowrank:rule=flops,flop_fraction=0.2", teacher)
    assert rep["factorised_flop_fraction"] <= 0.2
    before = evaluate(student, test)
    res = finetune(student, teacher, train, FinetuneConfig(epochs=4, lr=2e-3, progress=False), eval_data=test)
    after = res.report["student_accuracy_after"]
    assert res.report["student_accuracy_before"] == pytest.approx(before)
    assert after > before + 0.015
    assert after >= acc_teacher - 0.02
    # the loss went down
    hist = res.report["loss_history"]  # means over 50 steps; final_loss is the mean of the rest
    assert res.report["final_loss"] < hist[0][1]
