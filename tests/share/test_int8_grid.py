"""Shared weights on the INT8 grid: share, then quantize for TensorRT with int8-stored weights,
keeps exactly the shared levels as the int8 weights, so the packed artifact codes few values."""
from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from trtcompress.errors import ConfigError
from trtcompress.pipeline import Pipeline
from trtcompress.quant.trt_rules import check_trt_qdq
from trtcompress.sessions import SessionConfig, open_session
from trtcompress.share import ShareConfig
from trtcompress.share.pack import pack_bytes, unpack_bytes
from trtcompress.stages.quantize import QuantizeConfig
from trtcompress.zoo.fashion_mnist import fashion_mnist


@pytest.fixture(scope="module")
def calib(tmp_path_factory):
    x, _ = fashion_mnist("train", limit=32)
    path = tmp_path_factory.mktemp("calib") / "calib.npz"
    np.savez(path, x=x)
    return str(path)


@pytest.fixture(scope="module")
def runs(fp32, calib):
    """share (int8 grid, 4 bits) then quantize, and quantize alone, both storing int8 weights."""
    q = QuantizeConfig(calib=calib, weights="int8")
    shared = Pipeline([ShareConfig(bits=4, int8_grid=True), q]).run(fp32)
    alone = Pipeline([q]).run(fp32)
    return shared, alone


def _int8_weights(model: onnx.ModelProto) -> dict[str, np.ndarray]:
    return {t.name: numpy_helper.to_array(t) for t in model.graph.initializer if t.data_type == onnx.TensorProto.INT8 and len(t.dims) >= 2}


def test_quantize_keeps_exactly_the_shared_levels(runs):
    shared, alone = runs
    share_report, quant_report = (s.report for s in shared.stages)
    assert quant_report["shared_weights_decoded"] == share_report["layers_shared"] == 7  # the first Conv is under min_size
    assert all(l["codebook"] == "int8_grid" for l in share_report["layers"])
    levels = {l["weight"] + "_int8": l["int8_levels"] for l in share_report["layers"]}
    weights = _int8_weights(shared.model)
    assert set(levels) <= set(weights)
    for name, count in levels.items():
        w = weights[name]
        assert len(np.unique(w)) <= count <= 16, name  # the levels, nothing in between
        assert (np.abs(w).reshape(w.shape[0], -1).max(axis=1) == 127).all() or (np.abs(w).max(axis=0) == 127).all()  # scales kept
    # quantize alone fills the int8 range
    assert min(len(np.unique(w)) for w in _int8_weights(alone.model).values()) > 100
    check_trt_qdq(shared.model)


def test_packed_int8_model_is_smaller_and_restores_bit_exactly(runs):
    shared, alone = runs
    data_shared, data_alone = shared.model.SerializeToString(), alone.model.SerializeToString()
    art_shared, rep_shared = pack_bytes(data_shared)
    art_alone, _ = pack_bytes(data_alone)
    assert unpack_bytes(art_shared) == data_shared
    assert rep_shared["index_tensors"] >= 8  # the int8 weights (and per-channel zero points) coded on their own
    assert len(art_shared) < 0.7 * len(art_alone)  # 4-bit levels against full int8 ranges


def test_outputs_stay_close_to_fp32(fp32, runs):
    shared, _ = runs
    x, _ = fashion_mnist("test", limit=500)
    ref = open_session(fp32, SessionConfig(threads=1)).run(None, {"x": x})[0].argmax(1)
    # "basic": the exact Q/DQ arithmetic (ONNX Runtime's fused kernels saturate on CPUs without VNNI)
    got = open_session(shared.model, SessionConfig(threads=1, optimization="basic")).run(None, {"x": x})[0].argmax(1)
    assert np.mean(ref == got) > 0.9


def test_int8_grid_takes_per_layer_codebooks():
    with pytest.raises(ConfigError, match="int8_grid"):
        ShareConfig(int8_grid=True, granularity="channel")
