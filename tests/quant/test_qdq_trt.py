"""The TensorRT form: ONNX checker, TensorRT's Q/DQ constraints, ONNX Runtime, and numerics."""
from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from trtcompress.errors import DataError, ModelError
from trtcompress.quant.placement import plan_quantization
from trtcompress.quant.qdq_trt import write_trt_qdq
from trtcompress.quant.scales import weight_scales
from trtcompress.quant.table import CalibrationTable
from trtcompress.quant.trt_rules import check_trt_qdq, trt_qdq_violations

import qdq_graphs as graphs
from qdq_helpers import calibrate_for_test, case, run  # noqa: F401 (case is a fixture)


def _sqnr(ref, got):
    ref, got = np.concatenate([r.ravel() for r in ref]), np.concatenate([g.ravel() for g in got])
    return 10 * np.log10(np.sum(ref**2) / np.sum((ref - got) ** 2))


@pytest.mark.parametrize("weights", ["float", "int8"])
def test_written_model_is_valid_for_onnx_trt_and_ort(case, weights):
    name, model, plan, table, feeds = case
    q = write_trt_qdq(model, plan, table, weights=weights)
    onnx.checker.check_model(q, full_check=True)
    assert trt_qdq_violations(q) == []
    ops = [n.op_type for n in q.graph.node]
    assert ops.count("DequantizeLinear") == len(set(plan.qdq_tensors)) + len({(w.tensor, w.axis) for w in plan.weights})
    ref, got = run(model, feeds), run(q, feeds, optimize=False)
    assert _sqnr(ref, got) > 20, name  # int8 noise, not a broken graph
    # and ONNX Runtime's own optimised session runs it too
    assert run(q, feeds[:1])[0].shape == ref[0].shape


def test_int8_weights_are_exactly_the_quantized_float_weights(case):
    _, model, plan, table, feeds = case
    a = run(write_trt_qdq(model, plan, table, "float"), feeds, optimize=False)
    b = run(write_trt_qdq(model, plan, table, "int8"), feeds, optimize=False)
    for x, y in zip(a, b):
        np.testing.assert_allclose(x, y, rtol=1e-5, atol=1e-5)


def test_per_channel_scales_and_zero_points():
    model = graphs.mbconv()
    plan = plan_quantization(model)
    q = write_trt_qdq(model, plan, calibrate_for_test(model, plan, graphs.feeds(model)))
    inits = {t.name: numpy_helper.to_array(t) for t in q.graph.initializer}
    dq = {n.output[0]: n for n in q.graph.node if n.op_type == "DequantizeLinear"}
    node = dq["w2_dequantized"]  # depthwise weight [32, 1, 3, 3], axis 0
    assert inits[node.input[1]].shape == (32,) and inits[node.input[2]].dtype == np.int8
    assert onnx.helper.get_attribute_value(node.attribute[0]) == 0
    act = dq["a1_dequantized"]
    assert inits[act.input[1]].shape == () and inits[act.input[2]] == 0


def test_activation_scale_is_amax_over_127():
    model = graphs.mbconv()
    plan = plan_quantization(model)
    table = calibrate_for_test(model, plan, graphs.feeds(model))
    q = write_trt_qdq(model, plan, table)
    inits = {t.name: numpy_helper.to_array(t) for t in q.graph.initializer}
    for t in plan.qdq_tensors:
        assert inits[f"{t}_scale"] == pytest.approx(table.amax[t] / 127, rel=1e-6)


def test_dead_channel_scale_keeps_the_bias_in_int32():
    w = np.zeros((2, 3, 1, 1), np.float32)
    w[0] = 1.0
    w[1] = 1e-12  # a channel BatchNorm folding nearly zeroed
    bias = np.array([0.5, 4.0], np.float32)
    s = weight_scales(w, 0, bias, input_scale=1 / 127)
    assert np.all(np.abs(bias / (s * (1 / 127))) < 2**31)
    assert s[0] == pytest.approx(1 / 127)


def test_missing_range_is_a_clear_error():
    model = graphs.mbconv()
    plan = plan_quantization(model)
    with pytest.raises(DataError, match="no range for tensor"):
        write_trt_qdq(model, plan, CalibrationTable({}, "max"))


def test_old_opset_is_refused():
    model = graphs.mbconv(opset=11)
    plan = plan_quantization(model)
    table = calibrate_for_test(model, plan, graphs.feeds(model))
    with pytest.raises(ModelError, match="opset 13"):
        write_trt_qdq(model, plan, table)


# -- the checker fails on models TensorRT would refuse ----------------------------------------------


def _good():
    model = graphs.mbconv()
    plan = plan_quantization(model)
    return write_trt_qdq(model, plan, calibrate_for_test(model, plan, graphs.feeds(model)))


def _set_init(model, name, value):
    for t in model.graph.initializer:
        if t.name == name:
            t.CopyFrom(numpy_helper.from_array(value, name))


def test_checker_flags_nonzero_zero_point():
    q = _good()
    _set_init(q, "trtcompress_qdq_zero_point_int8", np.array(3, np.int8))
    assert any("all zeros" in v for v in trt_qdq_violations(q))
    with pytest.raises(ModelError, match="TensorRT"):
        check_trt_qdq(q)


def test_checker_flags_uint8_and_missing_zero_point():
    q = _good()
    _set_init(q, "trtcompress_qdq_zero_point_int8", np.array(0, np.uint8))
    assert any("needs int8" in v for v in trt_qdq_violations(q))
    q = _good()
    n = next(n for n in q.graph.node if n.op_type == "QuantizeLinear")
    del n.input[2]
    assert any("uint8" in v for v in trt_qdq_violations(q))


def test_checker_flags_bad_scales():
    q = _good()
    _set_init(q, "a1_scale", np.array(0.0, np.float32))
    assert any("> 0" in v for v in trt_qdq_violations(q))
    q = _good()
    _set_init(q, "w2_scale", np.ones(5, np.float32))
    _set_init(q, "w2_zero_point", np.zeros(5, np.int8))
    assert any("5 scales for axis 0 of size 32" in v for v in trt_qdq_violations(q))
    q = _good()
    _set_init(q, "a1_scale", np.ones((1, 1), np.float32))
    assert any("scalar or 1-D" in v for v in trt_qdq_violations(q))


def test_checker_flags_q_without_dq_and_old_opset():
    q = _good()
    for n in q.graph.node:
        if n.op_type == "DequantizeLinear" and n.input[0] == "a1_quantized":
            n.op_type = "Identity"
            del n.input[1:]
    assert any("needs QuantizeLinear -> DequantizeLinear" in v for v in trt_qdq_violations(q))
    q = _good()
    q.opset_import[0].version = 12
    assert any("opset >= 13" in v for v in trt_qdq_violations(q))
