"""The CPU lowering: same scales as the TensorRT form, integer operator form, runs in ONNX Runtime."""
from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from trtcompress.errors import ConfigError
from trtcompress.quant.lower_cpu import cpu_has_vnni, lower_cpu
from trtcompress.quant.placement import plan_quantization
from trtcompress.quant.qdq_trt import write_trt_qdq

import qdq_graphs as graphs
from qdq_helpers import calibrate_for_test, case, run  # noqa: F401 (case is a fixture)


def _sqnr(ref, got):
    ref, got = np.concatenate([r.ravel() for r in ref]), np.concatenate([g.ravel() for g in got])
    return 10 * np.log10(np.sum(ref**2) / np.sum((ref - got) ** 2))


@pytest.mark.parametrize("weights", ["uint8", "int7", "int8"])
def test_cpu_form_is_valid_and_runs(case, weights):
    name, model, plan, table, feeds = case
    low = lower_cpu(model, plan, table, weights=weights)
    onnx.checker.check_model(low.model)
    got = run(low.model, feeds)
    ref = run(model, feeds)
    assert [g.shape for g in got] == [r.shape for r in ref]
    if weights != "int8" or cpu_has_vnni():  # full-range int8 on signed inputs saturates without VNNI
        assert _sqnr(ref, got) > 20, name


def test_cpu_form_computes_what_the_tensorrt_form_computes(case):
    """Same scales, same int8 grid: the CPU model matches the Q/DQ model up to rounding order."""
    name, model, plan, table, feeds = case
    trt = run(write_trt_qdq(model, plan, table), feeds, optimize=False)
    cpu = run(lower_cpu(model, plan, table, weights="uint8").model, feeds)
    fp32 = run(model, feeds)
    assert _sqnr(trt, cpu) > 30, name
    assert _sqnr(fp32, cpu) > 25, name


def test_cpu_and_trt_targets_use_the_same_scales():
    model = graphs.mbconv()
    plan = plan_quantization(model)
    table = calibrate_for_test(model, plan, graphs.feeds(model))
    low = lower_cpu(model, plan, table)
    inits = {t.name: numpy_helper.to_array(t) for t in low.model.graph.initializer}
    allowed = {np.float32(a / 127) for a in table.amax.values()}
    act_scales = []
    for n in low.model.graph.node:
        if n.op_type == "QLinearConv":
            act_scales += [inits[n.input[1]], inits[n.input[6]]]
        elif n.op_type == "QLinearAdd":
            act_scales += [inits[n.input[1]], inits[n.input[4]], inits[n.input[6]]]
    assert act_scales
    for s in act_scales:
        assert any(np.isclose(s, a, rtol=1e-6) for a in allowed), s


def test_operator_form_and_zero_points():
    model = graphs.mbconv()
    plan = plan_quantization(model)
    table = calibrate_for_test(model, plan, graphs.feeds(model))
    low = lower_cpu(model, plan, table, weights="uint8")
    assert low.ops["QLinearConv"] == 4  # expand, depthwise, project, head (the 3-channel stem stays float)
    assert low.ops["QLinearAdd"] == 1 and low.ops["MatMulIntegerToFloat"] == 1
    by_name = {n.name: n for n in low.model.graph.node}
    inits = {t.name: numpy_helper.to_array(t) for t in low.model.graph.initializer}
    # ReLU6 outputs: zero point 0, so int8 weights cannot saturate; signed inputs: zero point 128
    assert inits[by_name["depthwise"].input[2]] == 0 and inits[by_name["depthwise"].input[3]].dtype == np.int8
    assert inits[by_name["project"].input[2]] == 0 and inits[by_name["project"].input[3]].dtype == np.int8
    assert inits[by_name["head"].input[2]] == 128 and inits[by_name["head"].input[3]].dtype == np.uint8
    assert low.weight_types == {"int8": 3, "uint8": 2}


def test_relu6_on_uint8_saturates_at_int8_127():
    model = graphs.mbconv()
    plan = plan_quantization(model)
    table = calibrate_for_test(model, plan, graphs.feeds(model))
    low = lower_cpu(model, plan, table)
    inits = {t.name: numpy_helper.to_array(t) for t in low.model.graph.initializer}
    clip = next(n for n in low.model.graph.node if n.name == "expand_relu6")
    assert clip.op_type == "Clip" and inits[clip.input[1]] == 0 and inits[clip.input[2]] <= 127


def test_unknown_weight_type_is_refused():
    model = graphs.mbconv()
    plan = plan_quantization(model)
    with pytest.raises(ConfigError, match="weight type"):
        lower_cpu(model, plan, calibrate_for_test(model, plan, graphs.feeds(model)), weights="int4")
