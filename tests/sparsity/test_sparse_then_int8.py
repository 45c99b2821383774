"""Sparsify then INT8: symmetric per-channel weight quantization maps 0 to 0, so weights stay 2:4."""
from __future__ import annotations

import numpy as np
import pytest

from trtcompress import zoo
from trtcompress.model_io import load_model
from trtcompress.sparsity.inspect import inspect_layers
from trtcompress.stage import get_stage, registered_stages
from trtcompress.stages.sparsify import SparsifyConfig, sparsify

pytestmark = pytest.mark.skipif("quantize" not in registered_stages(), reason="the quantize stage is not in this checkout yet")


@pytest.mark.parametrize("weights", ["float", "int8"])
def test_quantized_sparse_model_keeps_2to4(weights, tmp_path):
    model = load_model(zoo.onnx_path("fashion_cnn"))
    x, _ = zoo.fashion_mnist("test", limit=64)
    calib = tmp_path / "calib"
    calib.mkdir()
    for i in range(4):
        np.savez(calib / f"b{i}.npz", **{model.graph.input[0].name: x[16 * i : 16 * (i + 1)]})
    sparse = sparsify(model, SparsifyConfig(permute=True)).model
    pruned = {l.layer for l in inspect_layers(sparse) if l.follows_2to4}
    assert len(pruned) == 6
    entry = get_stage("quantize")
    cfg = entry.config_type.from_dict({"calib": str(calib), "weights": weights, "sensitivity_samples": 0, "progress": False, "method": "max"})
    q = entry.fn(sparse, cfg).model
    layers = {l.layer: l for l in inspect_layers(q)}
    assert all(layers[name].quantized for name in pruned)
    assert all(layers[name].follows_2to4 and layers[name].sparse_ready for name in pruned), {
        n: (layers[n].follows_2to4, layers[n].groups_violating) for n in pruned
    }
    assert all(layers[name].sparsity >= 0.5 for name in pruned)
