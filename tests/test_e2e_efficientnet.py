"""End to end on a real pretrained model with real photos: export -> compare -> bench, and the demo's job."""
from __future__ import annotations

import json

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from trtc_support import cli

pytestmark = [pytest.mark.torch, pytest.mark.slow]


def test_export_matches_torch_on_real_photos(efficientnet_onnx):
    import torch

    from trtcompress.data import model_inputs, open_source
    from trtcompress.data.readers import ReaderOptions
    from trtcompress.zoo import efficientnet_lite0

    model = efficientnet_lite0()
    feed = next(iter(open_source("photos:heldout", model_inputs(efficientnet_onnx), ReaderOptions(batch_size=12, limit=12))))
    with torch.no_grad():
        ref = model(torch.from_numpy(feed["x"])).numpy()
    got = ort.InferenceSession(str(efficientnet_onnx)).run(None, feed)[0]
    assert got.shape == (12, 1000)
    np.testing.assert_allclose(got, ref, atol=1e-3, rtol=1e-3)
    assert (got.argmax(1) == ref.argmax(1)).all()


def test_compare_and_bench_cli_on_real_model(efficientnet_onnx, tmp_path):
    r = cli("compare", str(efficientnet_onnx), str(efficientnet_onnx), "--data", "photos:heldout", "--limit", "24", "--min-top1", "1.0", "--json", check=True)
    out = json.loads(r.stdout)
    assert out["samples"] == 24 and out["outputs"]["output"]["top1_agreement"] == 1.0
    b = cli("bench", str(efficientnet_onnx), "--batch-sizes", "1,4", "--iterations", "6", "--rounds", "2", "--warmup", "1", "--json", check=True)
    res = json.loads(b.stdout)["results"]
    assert res["4"][str(efficientnet_onnx)]["p50_ms"] > res["1"][str(efficientnet_onnx)]["p50_ms"] * 0.5


def test_compress_from_torch_on_real_photos(tmp_path):
    """Export, quantize (calibrated on the calib photos) and compare on held-out photos: the
    compared model is INT8, so top-1 agreement measures the quantization, not a model with itself."""
    r = cli(
        "compress", "trtcompress.zoo:efficientnet_lite0", "--input", "x:1x3x224x224", "--stages", "quantize",
        "--calib", "photos:calib", "--data", "photos:heldout", "--limit", "24", "--batch", "12",
        "--name", "e2e", "--iterations", "4", "--min-top1", "0.7", "--json",
        cwd=tmp_path, check=True,
    )
    report = json.loads(r.stdout)
    assert report["export"]["check"]["data"]["max_abs"] < 1e-3
    assert [s["name"] for s in report["stages"]] == ["quantize"]
    final = onnx.load(str(tmp_path / "runs" / "e2e" / "artifacts" / "model.onnx"))
    assert sum(n.op_type == "QuantizeLinear" for n in final.graph.node) > 50
    top1 = report["compare"]["outputs"]["output"]["top1_agreement"]
    assert 0.7 <= top1 < 1.0 or report["compare"]["outputs"]["output"]["cosine_mean"] < 0.9999  # INT8, not FP32 again
    assert (tmp_path / "runs" / "e2e" / "report.json").exists()
    assert set(report["metrics"]) == {"compression", "speedup", "pruning_rate", "quantization_error"}
