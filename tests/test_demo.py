"""``trtcompress demo`` end to end (the one slow test), and the verdict it shares with ``compress``
failing a model whose accuracy broke."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from trtc_support import cli
from trtcompress.zoo.models import onnx_path

FASHION_EVAL = Path(__file__).resolve().parents[1] / "calibration" / "fashion_mnist_eval.npz"


@pytest.mark.torch  # in the default run: the README's first command must keep passing
@pytest.mark.timeout(900)  # about 70 s of CPU; minutes when the machine is shared
def test_demo_passes_with_the_per_kind_defaults(tmp_path):
    r = cli("demo", "--runs-dir", str(tmp_path), "--batch-sizes", "1", "--iterations", "5", "--json")
    assert r.returncode == 0, r.stderr[-2000:]
    report = json.loads(r.stdout)
    out = report["compare"]["outputs"]["output"]
    assert report["passed"] and out["kind"] == "classification" and out["thresholds"] == {"min_top1": 0.8}
    assert out["top1_agreement"] >= 0.8 and report["compare"]["samples"] == 552  # measured 84.8% (heldout, no VNNI)
    assert report["metrics"]["compression"]["ratio_disk"] > 3.5
    assert report["data_split"] == {"mode": "separate", "calibration": "photos:calib", "evaluation": "photos:heldout"}
    assert (tmp_path / "demo" / "report.json").is_file()


def test_broken_accuracy_fails_the_run(tmp_path):
    """A low-rank budget that wrecks the Fashion CNN (12.8% top-1 agreement) goes through the same
    verdict and exit status as the demo: exit 1, report.json and the summary say which output and why."""
    recipe = tmp_path / "recipe.json"
    recipe.write_text(json.dumps({"stages": [{"stage": "lowrank", "rule": "flops", "flop_fraction": 0.1}]}))
    r = cli("compress", str(onnx_path("fashion_cnn")), "--recipe", str(recipe), "--data", str(FASHION_EVAL), "--limit", "256",
            "--no-bench", "--runs-dir", str(tmp_path), "--name", "broken")
    assert r.returncode == 1, r.stderr[-2000:]
    report = json.loads((tmp_path / "broken" / "report.json").read_text())
    assert not report["passed"] and len(report["compare"]["failures"]) == 1
    assert report["compare"]["failures"][0].startswith("logits (classification): top-1 agreement")
    assert "FAILED:\n  logits (classification): top-1 agreement" in r.stdout
