"""Q/DQ only where TensorRT has INT8 kernels: Model Optimizer's small-channel rule, the 8.x depthwise rule."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnx_ir as ir
import pytest
from onnx import TensorProto, helper, numpy_helper

from trtcompress.model_io import infer_shapes, load_model
from trtcompress.quant.placement import plan_quantization
from trtcompress.quant.trt_kernels import kernel_exclusions
from trtcompress.quant.trt_rules import trt_qdq_violations
from trtcompress.stages.quantize import QuantizeConfig, quantize
from trtcompress.trt.version import parse_version

from qdq_helpers import calibrate_for_test, run

# name: (out channels, in channels per group, kernel, group, activation after it)
_CONVS = [
    ("first", 8, 3, (3, 3), 1, "Relu"),  # < 16 channels but reads the graph input, OC % 8 == 0: INT8
    ("small", 8, 8, (1, 1), 1, "Relu"),  # < 16 channels, not the first layer: float
    ("widen", 24, 8, (1, 1), 1, "Relu"),  # IC 8 < 16 but OC >= 16 and divisible by 8: INT8
    ("dw_relu", 24, 1, (3, 3), 24, "Relu"),  # depthwise, OC % 8 == 0, 3x3: INT8 (on 8.x too: ReLU follows)
    ("rect", 16, 24, (1, 3), 1, "Relu"),  # OC 16, IC 24: not small, so the square-kernel clause never applies: INT8
    ("dw_swish", 16, 1, (3, 3), 16, "Swish"),  # depthwise, OC % 8 == 0, 3x3: INT8 except on 8.x (Swish after it)
    ("narrow", 12, 16, (3, 1), 1, "Relu"),  # OC 12 < 16, IC 16 % 8 == 0 but the kernel is not square: float
    ("dw_odd", 12, 1, (3, 3), 12, None),  # depthwise with OC 12 (not % 8): float
]
_FLOAT_EVERYWHERE = {"small", "narrow", "dw_odd"}
_FLOAT_ON_8X = _FLOAT_EVERYWHERE | {"dw_swish"}


def conv_ladder() -> onnx.ModelProto:
    rng = np.random.default_rng(0)
    nodes, inits, x, ch = [], [], "x", 3
    for name, oc, icg, k, group, act in _CONVS:
        assert icg * group == ch
        w = (rng.standard_normal((oc, icg, *k)) / np.sqrt(icg * k[0] * k[1])).astype(np.float32)
        inits += [numpy_helper.from_array(w, f"{name}.w"), numpy_helper.from_array(np.zeros(oc, np.float32), f"{name}.b")]
        pads = [k[0] // 2, k[1] // 2, k[0] // 2, k[1] // 2]
        nodes.append(helper.make_node("Conv", [x, f"{name}.w", f"{name}.b"], [f"{name}.y"], name=name, group=group, kernel_shape=list(k), pads=pads))
        x = f"{name}.y"
        if act == "Relu":
            nodes.append(helper.make_node("Relu", [x], [f"{name}.r"], name=f"{name}.relu"))
            x = f"{name}.r"
        elif act == "Swish":
            nodes.append(helper.make_node("Sigmoid", [x], [f"{name}.s"], name=f"{name}.sigmoid"))
            nodes.append(helper.make_node("Mul", [x, f"{name}.s"], [f"{name}.m"], name=f"{name}.mul"))
            x = f"{name}.m"
        ch = oc
    nodes.append(helper.make_node("GlobalAveragePool", [x], ["y"], name="gap"))
    graph = helper.make_graph(nodes, "ladder", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, 12, 12])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", ch, 1, 1])], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


@pytest.mark.parametrize("version, expected", [(None, _FLOAT_EVERYWHERE), ("10.3", _FLOAT_EVERYWHERE), ("11.0", _FLOAT_EVERYWHERE), ("8.6", _FLOAT_ON_8X)])
def test_each_clause_of_the_rule(version, expected):
    model = infer_shapes(conv_ladder())
    plan = plan_quantization(model)
    assert set(plan.quantized_nodes) == {c[0] for c in _CONVS}
    out = kernel_exclusions(model, plan, parse_version(version) if version else None)
    assert set(out) == expected
    assert "small-channel Conv (OC 8, IC/group 8" in out["small"]
    if version == "8.6":
        assert "depthwise" in out["dw_swish"] and "Sigmoid" in out["dw_swish"] and "TensorRT#3385" in out["dw_swish"]


def test_quantize_stage_leaves_them_float_and_reports_why(tmp_path):
    """The TensorRT form: no DequantizeLinear feeds the excluded Convs; the plan lists them with the
    reason; the calibration table still covers them (it also serves the CPU form)."""
    model = conv_ladder()
    x = np.random.default_rng(1).uniform(0, 1, (32, 3, 12, 12)).astype(np.float32)
    feeds = [{"x": x[i : i + 8]} for i in range(0, 32, 8)]
    table = calibrate_for_test(infer_shapes(model), plan_quantization(infer_shapes(model)), feeds)
    (tmp_path / "t.json").write_text(table.to_json())
    result = quantize(model, QuantizeConfig(table=str(tmp_path / "t.json"), sensitivity_samples=0, target_trt="8.6"))
    reads_dq = {n.name for n in ir.from_proto(result.model).graph
                if any(v is not None and (p := v.producer()) is not None and p.op_type == "DequantizeLinear" for v in n.inputs)}
    assert reads_dq == {c[0] for c in _CONVS} - _FLOAT_ON_8X
    kept = result.report["plan"]["kept_float"]
    assert sorted(n for reason, ns in kept.items() if "INT8 kernel" in reason for n in ns) == sorted(_FLOAT_ON_8X)
    assert set(result.report["no_int8_kernel"]) == _FLOAT_ON_8X
    assert trt_qdq_violations(result.model) == []
    assert set(table.amax) <= set(__import__("json").loads(result.artifacts["calibration.json"])["amax"])
    np.testing.assert_allclose(run(result.model, feeds[:1])[0], run(model, feeds[:1])[0], atol=0.1)
    # without a version only the version-independent rule applies
    plain = quantize(model, QuantizeConfig(table=str(tmp_path / "t.json"), sensitivity_samples=0))
    assert sorted(n for r, ns in plain.report["plan"]["kept_float"].items() if "INT8 kernel" in r for n in ns) == sorted(_FLOAT_EVERYWHERE)


_CLS = Path(onnx.__file__).parents[1] / "rapidocr_onnxruntime" / "models" / "ch_ppocr_mobile_v2.0_cls_infer.onnx"


@pytest.mark.skipif(not _CLS.is_file(), reason="rapidocr-onnxruntime's models are not installed")
def test_a_real_mobilenet_v3():
    """PP-OCR's text direction classifier (MobileNetV3-small: 8-channel squeeze-excite convs, depthwise
    convs followed by hard-swish): exactly the < 16 channel convs outside the clauses stay float."""
    model = infer_shapes(load_model(_CLS))
    plan = plan_quantization(model)
    by_name = {n.name: n for n in ir.from_proto(model).graph}
    shapes = {n: ir.convenience.get_const_tensor(by_name[n].inputs[1]).shape for n in plan.quantized_nodes if by_name[n].op_type == "Conv"}
    out = kernel_exclusions(model, plan)
    small = {n for n, s in shapes.items() if min(s[0], s[1]) < 16}
    assert set(out) < small and len(out) == 4
    for n in out:  # each excluded conv fails both clauses
        s = shapes[n]
        assert by_name[n].attributes.get_int("group", 1) == 1 and (s[0] % 8 and s[1] % 8 or max(s[0], s[1]) < 16)
    on_86 = kernel_exclusions(model, plan, parse_version("8.6"))
    dw = {n for n in on_86 if "depthwise" in on_86[n]}
    assert set(on_86) == set(out) | dw and len(dw) == 8  # depthwise convs followed by hard-swish
    assert all("HardSwish" in on_86[n] for n in dw)
    assert kernel_exclusions(model, plan, parse_version("10.3")) == out
