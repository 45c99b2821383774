"""The report page draws the distillation loss a fine-tuning run reports (its real ``loss_history``),
and reads the other forms a stage may keep a loss curve in."""
from __future__ import annotations

import re

import pytest

torch = pytest.importorskip("torch")

from trtcompress.finetune import FinetuneConfig, apply_transform, finetune  # noqa: E402
from trtcompress.report import render  # noqa: E402
from trtcompress.report.plots import loss_curves  # noqa: E402


def test_page_draws_the_distillation_loss(teacher, digits):
    train, _ = digits
    student, _ = apply_transform("lowrank:rule=flops,flop_fraction=0.2", teacher)
    res = finetune(student, teacher, train, FinetuneConfig(steps=200, lr=2e-3, progress=False))
    history = res.report["loss_history"]
    assert len(history) == 4  # a mean over every 50 steps
    page = render({"status": "completed", "config": {"model": "digits_mlp"}, "stages": [{"name": "finetune", "report": res.report}]})
    svg = re.search(r'<svg [^>]*data-plot="loss-0-finetune".*?</svg>', page, re.S).group(0)
    points = re.search(r'<polyline points="([^"]+)"', svg).group(1).split()
    assert len(points) == len(history)
    ys = [float(p.split(",")[1]) for p in points]
    assert ys[-1] > ys[0]  # the loss went down: lower on the page is a larger y
    assert "final distillation loss" in page and f"{res.report['final_loss']:.4g}" in page


@pytest.mark.parametrize("held", [
    {"loss_history": [[50, 2.0], [100, 1.0]]},
    {"loss_curve": [2.0, 1.0]},
    {"history": [{"step": 50, "loss": 2.0}, {"step": 100, "loss": 1.0}]},
    {"history": {"step": [50, 100], "loss": [2.0, 1.0]}},
    {"distill": {"loss_history": [[50, 2.0], [100, 1.0]]}},
])
def test_loss_curve_forms(held):
    (curve,) = loss_curves(held)
    assert list(curve.ys) == [2.0, 1.0]


def test_curves_by_name_and_nothing_to_draw():
    curves = loss_curves({"history": {"train": [3.0, 2.0], "eval": [[1, 2.5], [2, 2.4]]}})
    assert [c.name for c in curves] == ["train", "eval"]
    assert loss_curves({"history": "n/a", "loss": 1.0}) == []
