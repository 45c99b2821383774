"""compress --target-trt: the opset fitted to the parser, and what each stage changes for a version."""
from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper, version_converter

from trtcompress.errors import ConfigError, ModelError
from trtcompress.lowrank.config import LowRankConfig
from trtcompress.stages.quantize import QuantizeConfig
from trtcompress.stages.sparsify import SparsifyConfig
from trtcompress.trt.opset import default_opset, fit_opset
from trtcompress.trt.target import adapt_stages


def _run(model: onnx.ModelProto, feed: dict) -> list[np.ndarray]:
    so = ort.SessionOptions()
    so.log_severity_level = 3
    return ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"]).run(None, feed)


def _reduce_mean_18() -> onnx.ModelProto:
    """ReduceMean with its axes as an input: the opset 18 form TensorRT 8.6 misreads."""
    # noop_with_empty_axes=0 spelt out, as torch's exporter writes it (the converter rejects it as such)
    nodes = [helper.make_node("ReduceMean", ["x", "axes"], ["y"], keepdims=1, noop_with_empty_axes=0)]
    graph = helper.make_graph(
        nodes, "rm", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3, 4, 5])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 3, 1, 1])],
        [numpy_helper.from_array(np.array([2, 3], np.int64), "axes")],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])


def test_reduce_mean_axes_input_converts_to_the_attribute_form_with_the_same_values():
    model = _reduce_mean_18()
    fit = fit_opset(model, "8.6")
    assert fit.converted and (fit.opset_before, fit.opset_after) == (18, 17)
    rm = [n for n in fit.model.graph.node if n.op_type == "ReduceMean"]
    assert len(rm) == 1 and list(rm[0].input) == ["x"]  # axes became the attribute TensorRT 8.6 reads
    assert list(helper.get_attribute_value(next(a for a in rm[0].attribute if a.name == "axes"))) == [2, 3]
    x = np.random.default_rng(0).standard_normal((2, 3, 4, 5)).astype(np.float32)
    np.testing.assert_allclose(_run(fit.model, {"x": x})[0], _run(model, {"x": x})[0], rtol=0, atol=0)
    np.testing.assert_allclose(_run(fit.model, {"x": x})[0], x.mean(axis=(2, 3), keepdims=True), rtol=1e-6)


def test_a_real_transformer_at_opset_18_comes_back_to_17_with_the_same_outputs():
    """The shipped Fashion ViT (LayerNorm, Softmax, ReduceMean head) raised to 18, then fitted to 8.6."""
    zoo = pytest.importorskip("trtcompress.zoo")
    model = version_converter.convert_version(onnx.load(zoo.onnx_path("fashion_vit")), 18)
    assert any(n.op_type == "ReduceMean" and len(n.input) == 2 for n in model.graph.node)
    fit = fit_opset(model, "8.6.1")
    assert default_opset(fit.model) == 17
    assert not any(n.op_type == "ReduceMean" and len(n.input) == 2 for n in fit.model.graph.node)
    x, _ = zoo.fashion_mnist("test", limit=32)
    np.testing.assert_allclose(_run(fit.model, {"x": x})[0], _run(model, {"x": x})[0], atol=1e-5)
    # 10.x parses opset 18: left as it is
    assert fit_opset(model, "10.3").model is model


def test_an_op_with_no_older_form_is_refused_in_one_line():
    nodes = [helper.make_node("Col2Im", ["x", "s", "b"], ["y"])]
    graph = helper.make_graph(
        nodes, "c2i", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4, 9])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 1, 4, 4])],
        [numpy_helper.from_array(np.array([4, 4], np.int64), "s"), numpy_helper.from_array(np.array([2, 2], np.int64), "b")],
    )
    with pytest.raises(ModelError, match="cannot be converted to opset 17 for TensorRT 8.6.0") as e:
        fit_opset(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)]), "8.6")
    assert "\n" not in str(e.value) and "export --opset 17" in str(e.value)


def test_ranks_round_to_tensor_core_multiples_16_with_int8_8_without():
    with_int8, notes = adapt_stages((LowRankConfig(), QuantizeConfig()), "10.3")
    assert with_int8[0].rank_multiple == 16 and "multiples of 16" in notes[0]
    fp16, _ = adapt_stages((LowRankConfig(),), "10.3")
    assert fp16[0].rank_multiple == 8
    # a user's multiple is kept when it already is one (lcm), raised when it is not
    assert adapt_stages((LowRankConfig(rank_multiple=32),), "8.6")[0][0].rank_multiple == 32
    assert adapt_stages((LowRankConfig(rank_multiple=12),), "8.6")[0][0].rank_multiple == 24
    # stages without an adapter are untouched
    sp = SparsifyConfig()
    assert adapt_stages((sp,), "8.6")[0][0] is sp


def test_quantize_is_placed_for_the_version_and_writes_the_cache_only_when_asked():
    (q,), _ = adapt_stages((QuantizeConfig(),), "8.6")
    assert q.target_trt == "8.6.0" and q.trt_version is None
    (q,), notes = adapt_stages((QuantizeConfig(),), "10.3.0", calibration_cache=True)
    assert q.trt_version == "10.3.0" and any("calibration cache" in n for n in notes)
    with pytest.raises(ConfigError, match="no implicit INT8"):
        adapt_stages((QuantizeConfig(),), "11.0", calibration_cache=True)
    with pytest.raises(ConfigError, match="add a quantize stage"):
        adapt_stages((LowRankConfig(),), "10.3", calibration_cache=True)
    with pytest.raises(ConfigError, match="target is 'cpu'"):
        adapt_stages((QuantizeConfig(target="cpu"),), "10.3")


def test_a_recipe_field_sets_the_target():
    from trtcompress.job import CompressConfig

    cfg = CompressConfig.from_dict({"model": "m.onnx", "target_trt": "10.3", "calibration_cache": True, "stages": [{"stage": "quantize"}]})
    assert cfg.target_trt == "10.3" and cfg.calibration_cache
    assert CompressConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(ConfigError, match="no implicit INT8"):
        CompressConfig(model="m.onnx", target_trt="11.0", calibration_cache=True)
