"""lowrank composes with the INT8 stage in one pipeline, on the shipped Fashion CNN and real data."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest

from trtcompress.lowrank import LowRankConfig
from trtcompress.pipeline import Pipeline
from trtcompress.stage import get_stage
from trtcompress.zoo import onnx_path

CALIB = str(Path(__file__).resolve().parents[2] / "calibration" / "fashion_mnist")


def test_lowrank_then_quantize(tmp_path):
    import onnxruntime as ort

    if not Path(CALIB).is_dir():
        pytest.skip("calibration set not in the working directory")
    quant = get_stage("quantize").config_type(calib=CALIB, limit=128)
    model = onnx.load(str(onnx_path("fashion_cnn")))
    res = Pipeline([LowRankConfig(rule="flops", flop_fraction=0.5), quant]).run(model)
    assert [s.name for s in res.stages] == ["lowrank", "quantize"]
    ops = [n.op_type for n in res.model.graph.node]
    assert "QuantizeLinear" in ops and any(n.name.endswith("/lowrank_a") for n in res.model.graph.node)
    x = np.load(Path(CALIB).parent / "fashion_mnist_eval.npz")["x"][:256]  # test images: never calibrated on
    a = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    b = ort.InferenceSession(res.model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    assert np.mean(a.argmax(-1) == b.argmax(-1)) >= 0.8


def test_lowrank_sparsify_quantize_in_one_job(tmp_path):
    """The three ONNX stages in one compress run: factorise, prune 2:4 (factors included), INT8;
    the INT8 model's weights still follow 2:4 wherever the sparsify stage pruned."""
    import json

    from trtc_support import cli
    from trtcompress.sparsity.inspect import inspect_layers

    recipe = tmp_path / "recipe.json"
    recipe.write_text(json.dumps({"stages": [
        {"stage": "lowrank", "rule": "flops", "flop_fraction": 0.5},
        {"stage": "sparsify"},
        {"stage": "quantize", "limit": 128},
    ]}))
    cli("compress", str(onnx_path("fashion_cnn")), "--recipe", str(recipe), "--calib", CALIB, "--data", str(Path(CALIB).parent / "fashion_mnist_eval.npz"),
        "--name", "all", "--no-bench", "--no-default-thresholds", cwd=tmp_path, check=True)  # one-shot, no fine-tuning: 74.7% top-1, below the default verdict
    report = json.loads((tmp_path / "runs" / "all" / "report.json").read_text())
    assert [s["name"] for s in report["stages"]] == ["normalize", "lowrank", "sparsify", "quantize"]
    pruned = {r["layer"] for r in report["stages"][2]["report"]["layers"]}
    final = onnx.load(str(tmp_path / "runs" / "all" / "artifacts" / "model.onnx"))
    ready = {l.layer for l in inspect_layers(final) if l.sparse_ready}
    assert pruned and pruned <= ready
    assert report["metrics"]["pruning_rate"]["percent"] > 0
    assert report["compare"]["samples"] == 1000 and report["compare"]["outputs"]["logits"]["cosine_mean"] > 0.5
