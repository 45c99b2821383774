"""Defaults never make a model worse for nothing: a stage that changes nothing, or costs accuracy
for a negligible gain, says so in one line (stage report, report.json notes and the summary)."""
from __future__ import annotations

from pathlib import Path

import onnx

from trtc_support import cli
from trtcompress.job import CompressConfig, compress, stage_config
from trtcompress.stages.lowrank import LowRankConfig, lowrank
from trtcompress.zoo.models import onnx_path

FASHION = Path(__file__).resolve().parents[1] / "calibration"


def test_lowrank_that_factorises_nothing_says_so(tiny_model):
    r = lowrank(onnx.load(str(tiny_model)), LowRankConfig())
    assert r.report["factorised"] == 0 and len(r.report["notes"]) == 1 and "factorised no layer" in r.report["notes"][0]


def test_lowrank_with_a_negligible_gain_says_so():
    r = lowrank(onnx.load(str(onnx_path("fashion_cnn"))), LowRankConfig())  # default energy 0.95: 3.2% of the FLOPs
    assert r.report["factorised"] > 0 and "removed only" in r.report["notes"][0]


def test_quantize_that_leaves_the_model_slower_on_this_cpu_says_so(tmp_path):
    """The TensorRT form run by ONNX Runtime on a CPU (measured 0.45x at batch 1 on the Fashion CNN)."""
    stages = (stage_config("quantize", {"sensitivity_samples": 0}),)
    config = CompressConfig(model=str(onnx_path("fashion_cnn")), name="slow", runs_dir=str(tmp_path), stages=stages,
                            data=str(FASHION / "fashion_mnist_eval.npz"), calib=str(FASHION / "fashion_mnist"), limit=64)
    report = compress(config.replace(bench=config.bench.replace(iterations=30))).report
    speedup = report["bench"]["speedup_vs_first"]["1"]["compressed"]
    slower = [n for n in report["notes"] if "slower than the original" in n]
    assert (speedup < 1.0) == bool(slower)
    assert speedup < 0.9 and slower  # the measured gap is wide: this CPU form of Q/DQ is not a fast path
    assert slower[0] in report["stages"][-1]["report"]["notes"]


def test_notes_reach_the_summary(tmp_path):
    r = cli("compress", str(onnx_path("fashion_cnn")), "--stages", "lowrank", "--data", str(FASHION / "fashion_mnist_eval.npz"),
            "--limit", "16", "--no-bench", "--runs-dir", str(tmp_path), "--name", "lr")
    assert r.returncode == 0, r.stderr[-2000:]
    assert "note: lowrank: removed only" in r.stdout
