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


def _mbconv_lowered(weights: str = "int7"):
    model = graphs.mbconv()
    plan = plan_quantization(model)
    table = calibrate_for_test(model, plan, graphs.feeds(model))
    return model, plan, table, lower_cpu(model, plan, table, weights=weights)


def _inits(model: onnx.ModelProto) -> dict[str, np.ndarray]:
    return {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}


def test_cpu_and_trt_targets_use_the_same_scales():
    """Same amax values: scale amax / 127, or amax / 255 on zero-point-0 (non-negative) tensors."""
    _, _, table, low = _mbconv_lowered()
    inits = _inits(low.model)
    amaxes = list(table.amax.values())
    pairs = []  # (scale, zero point) of every activation a QLinear op reads or writes
    for n in low.model.graph.node:
        if n.op_type == "QLinearConv":
            pairs += [(n.input[1], n.input[2]), (n.input[6], n.input[7])]
        elif n.op_type == "QLinearAdd":
            pairs += [(n.input[1], n.input[2]), (n.input[4], n.input[5]), (n.input[6], n.input[7])]
    assert pairs
    for s, zp in pairs:
        s, zp = inits[s], int(inits[zp])
        steps = (127, 255) if zp == 0 else (127,)
        assert any(np.isclose(s * k, a, rtol=1e-6) for a in amaxes for k in steps), (s, zp)


def test_operator_form_and_zero_points():
    _, _, _, low = _mbconv_lowered("uint8")
    assert low.ops["QLinearConv"] == 4  # expand, depthwise, project, head (the 3-channel stem stays float)
    assert low.ops["QLinearAdd"] == 1 and low.ops["MatMulIntegerToFloat"] == 1
    by_name = {n.name: n for n in low.model.graph.node}
    inits = _inits(low.model)
    # ReLU6 outputs: zero point 0, so int8 weights cannot saturate; signed inputs: zero point 128
    assert inits[by_name["depthwise"].input[2]] == 0 and inits[by_name["depthwise"].input[3]].dtype == np.int8
    assert inits[by_name["project"].input[2]] == 0 and inits[by_name["project"].input[3]].dtype == np.int8
    assert inits[by_name["head"].input[2]] == 128 and inits[by_name["head"].input[3]].dtype == np.uint8
    assert low.weight_types == {"int8": 3, "uint8": 2}


def test_relu6_before_a_pointwise_conv_saturates_at_int8_127():
    """The project conv keeps int8 weights, so its input stays on TensorRT's 0..127 values."""
    _, _, table, low = _mbconv_lowered("int7")
    inits = _inits(low.model)
    clip = next(n for n in low.model.graph.node if n.name == "depthwise_relu6")
    assert clip.op_type == "Clip" and inits[clip.input[1]] == 0 and inits[clip.input[2]] <= 127
    project = next(n for n in low.model.graph.node if n.name == "project")
    assert inits[project.input[3]].dtype == np.int8 and np.isclose(inits[project.input[1]] * 127, table.amax["a2"], rtol=1e-6)


def test_relu6_before_a_depthwise_conv_is_the_uint8_saturation():
    """expand -> ReLU6 -> depthwise: the ReLU6 is the expand kernel's uint8 saturation on amax / 255."""
    _, _, table, low = _mbconv_lowered("int7")
    inits = _inits(low.model)
    expand = next(n for n in low.model.graph.node if n.name == "expand")
    depthwise = next(n for n in low.model.graph.node if n.name == "depthwise")
    assert depthwise.input[0] == expand.output[0]  # no Clip between them
    assert "expand_relu6" not in {n.name for n in low.model.graph.node}
    assert int(inits[expand.input[7]]) == 0 and np.isclose(inits[expand.input[6]] * 255, table.amax["a1"], rtol=1e-6)


def _with_output(model: onnx.ModelProto, name: str, elem_type: int) -> onnx.ModelProto:
    out = onnx.ModelProto()
    out.CopyFrom(model)
    out.graph.output.append(onnx.helper.make_tensor_value_info(name, elem_type, None))
    return out


def test_absorbed_relu6_rounds_the_float_relu6():
    """The absorbed clip is exact: the expand kernel's uint8 output is the float ReLU6 of its own
    integer 1x1 conv (recomputed here from its uint8 input and int8 weights) rounded to amax / 255."""
    model, _, table, low = _mbconv_lowered("int7")
    expand = next(n for n in low.model.graph.node if n.name == "expand")
    inits = _inits(low.model)
    x_scale, x_zp, w, w_scale, y_scale = (inits[expand.input[i]] for i in (1, 2, 3, 4, 6))
    bias = inits[expand.input[8]]
    probe = _with_output(_with_output(low.model, expand.input[0], onnx.TensorProto.UINT8), expand.output[0], onnx.TensorProto.UINT8)
    for feed in graphs.feeds(model):
        xq, yq = _session_outputs(probe, feed)[1:]
        acc = np.einsum("nchw,oc->nohw", xq.astype(np.int64) - int(x_zp), w[:, :, 0, 0].astype(np.int64)) + bias[None, :, None, None]
        relu6 = np.clip(acc * (float(x_scale) * w_scale.astype(np.float64))[None, :, None, None], 0, table.amax["a1"])
        got = yq.astype(np.float64) * float(y_scale)
        assert np.abs(got - relu6).max() <= float(y_scale) * (0.5 + 1e-3)
        assert yq.max() == 255  # the ReLU6 bound is reached on these inputs, so the saturation did the clipping


def test_depthwise_conv_on_full_range_input_does_not_saturate():
    """The depthwise conv reads 0..255 with full int8 weights (ONNX Runtime's depthwise kernel widens
    to int16 before multiplying): its output is the exact integer conv, requantized."""
    _, _, _, low = _mbconv_lowered("int7")
    dw = next(n for n in low.model.graph.node if n.name == "depthwise")
    inits = _inits(low.model)
    x_scale, x_zp, w, w_scale, y_scale, y_zp = (inits[dw.input[i]] for i in (1, 2, 3, 4, 6, 7))
    assert w.dtype == np.int8 and np.abs(w).max() == 127 and int(x_zp) == 0
    probe = _with_output(_with_output(low.model, dw.input[0], onnx.TensorProto.UINT8), dw.output[0], onnx.TensorProto.UINT8)
    for feed in graphs.feeds(graphs.mbconv()):
        xq, yq = _session_outputs(probe, feed)[1:]
        assert xq.max() == 255
        xp = np.pad(xq.astype(np.int64), ((0, 0), (0, 0), (1, 1), (1, 1)))
        h, wd = xq.shape[2:]
        acc = sum(xp[:, :, i : i + h, j : j + wd] * w[None, :, 0, i, j, None, None].astype(np.int64) for i in range(3) for j in range(3))
        acc = acc + inits[dw.input[8]][None, :, None, None]
        want = np.clip(np.rint(acc * (float(x_scale) * w_scale.astype(np.float64) / float(y_scale))[None, :, None, None]) + int(y_zp), 0, 255)
        assert np.abs(yq.astype(np.float64) - want).max() <= 1


def test_rgb_stem_reads_channels_padded_to_four_and_computes_the_same():
    """With int8 weights the 3-channel stem runs in int8 on a 4-channel input (zero-point channel,
    zero weights: ONNX Runtime's fast symmetric kernel); its output equals the unpadded conv's."""
    model, _, _, low = _mbconv_lowered("int7")
    nodes = {n.name: n for n in low.model.graph.node}
    stem, pad = nodes["stem"], nodes["stem__channel_Pad"]
    assert stem.op_type == "QLinearConv" and stem.input[0] == pad.output[0]
    inits = _inits(low.model)
    assert inits[stem.input[3]].shape[1] == 4 and not inits[stem.input[3]][:, 3].any()
    assert inits[pad.input[2]] == inits[stem.input[2]]  # padded with the zero point
    unpadded = onnx.ModelProto()
    unpadded.CopyFrom(low.model)
    for n in unpadded.graph.node:
        if n.name == "stem":
            n.input[0] = pad.input[0]
    for t in unpadded.graph.initializer:
        if t.name == stem.input[3]:
            t.CopyFrom(numpy_helper.from_array(inits[stem.input[3]][:, :3], t.name))
    probe = stem.output[0]
    for feed in graphs.feeds(model):
        got = _session_outputs(_with_output(low.model, probe, onnx.TensorProto.UINT8), feed)[-1]
        want = _session_outputs(_with_output(unpadded, probe, onnx.TensorProto.UINT8), feed)[-1]
        assert np.abs(got.astype(int) - want.astype(int)).max() <= 1 and np.mean(got != want) < 0.01


def test_channel_padding_keeps_uint8_weight_stems_float():
    _, _, _, low = _mbconv_lowered("uint8")
    stem = next(n for n in low.model.graph.node if n.name == "stem")
    assert stem.op_type == "Conv" and "Pad" not in [n.op_type for n in low.model.graph.node if n.name.startswith("stem")]


@pytest.mark.parametrize("graph", ["mbconv", "conv_mean_head"])
def test_global_average_pool_runs_on_uint8(graph):
    """GlobalAveragePool, or ReduceMean over H and W, is one QLinearGlobalAveragePool whose output is
    the float mean of its dequantized input, requantized (within one step for rounding order)."""
    model = getattr(graphs, graph)()
    plan = plan_quantization(model)
    feeds = graphs.feeds(model)
    table = calibrate_for_test(model, plan, feeds)
    low = lower_cpu(model, plan, table, weights="int7")
    pool = next(n for n in low.model.graph.node if n.op_type == "QLinearGlobalAveragePool")
    assert not {"GlobalAveragePool", "ReduceMean", "DequantizeLinear"} & {n.op_type for n in low.model.graph.node}
    inits = _inits(low.model)
    xs, xz, ys, yz = (float(inits[pool.input[i]]) for i in (1, 2, 3, 4))
    probe = _with_output(_with_output(low.model, pool.input[0], onnx.TensorProto.UINT8), pool.output[0], onnx.TensorProto.UINT8)
    for feed in feeds:
        xq, yq = _session_outputs(probe, feed)[1:]
        mean = ((xq.astype(np.float64) - xz) * xs).mean(axis=(2, 3), keepdims=True)
        want = np.clip(np.rint(mean / ys) + yz, 0, 255)
        assert np.abs(yq.astype(np.float64) - want).max() <= 1
    assert _sqnr(run(model, feeds), run(low.model, feeds)) > 20


def _session_outputs(model: onnx.ModelProto, feed, optimize: bool = True) -> list[np.ndarray]:
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.log_severity_level = 3
    if not optimize:
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    return ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"]).run(None, feed)


def test_unknown_weight_type_is_refused():
    model = graphs.mbconv()
    plan = plan_quantization(model)
    with pytest.raises(ConfigError, match="weight type"):
        lower_cpu(model, plan, calibrate_for_test(model, plan, graphs.feeds(model)), weights="int4")


def test_encoder_folds_linear_biases_and_keeps_attention_products_float():
    """Linear layers: one MatMulIntegerToFloat with the bias in its epilogue; QK^T and AV (two
    activations, quantized at run time) are slower than float on x86 and stay float."""
    model = graphs.encoder()
    plan = plan_quantization(model)
    feeds = graphs.feeds(model)
    low = lower_cpu(model, plan, calibrate_for_test(model, plan, feeds), weights="uint8")
    nodes = {n.name: n for n in low.model.graph.node}
    assert "o_bias" not in nodes and "fc1_bias" not in nodes
    for name, bias, out in (("o_proj", "bo", "ob"), ("fc1", "b1", "m1b")):
        n = nodes[name]
        assert n.op_type == "MatMulIntegerToFloat" and n.output[0] == out
        np.testing.assert_array_equal(_inits(low.model)[n.input[6]], _inits(model)[bias])
    assert nodes["qk"].op_type == "MatMul" and nodes["av"].op_type == "MatMul"
    assert {"qk", "av"} <= set(plan.quantized_nodes)  # the TensorRT form still quantizes them
    assert _sqnr(run(model, feeds), run(low.model, feeds)) > 25
    assert set(low.float_layers) == {"qk", "av"}


def _ops_by_node(model: onnx.ModelProto) -> dict[str, str]:
    return {n.name: n.op_type for n in model.graph.node}


def _float_output_convs() -> onnx.ModelProto:
    """x -> dense 3x3 conv (64 -> 64) -> ReLU, read by a depthwise 3x3 conv and by a small 1x1 conv
    (64 -> 8), both writing float graph outputs (ConvInteger if lowered)."""
    from onnx import TensorProto, helper

    rng = np.random.default_rng(0)
    w = {"wd": rng.standard_normal((64, 64, 3, 3)) * 0.05, "bd": rng.standard_normal(64) * 0.1,
         "wdw": rng.standard_normal((64, 1, 3, 3)) * 0.3, "bdw": rng.standard_normal(64) * 0.1,
         "ws": rng.standard_normal((8, 64, 1, 1)) * 0.1}
    nodes = [helper.make_node("Conv", ["x", "wd", "bd"], ["c"], name="dense", pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["c"], ["r"], name="relu"),
             helper.make_node("Conv", ["r", "wdw", "bdw"], ["y"], name="depthwise", group=64, pads=[1, 1, 1, 1]),
             helper.make_node("Conv", ["r", "ws"], ["z"], name="small")]
    g = helper.make_graph(nodes, "float_output_convs", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 64, 16, 16])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, None), helper.make_tensor_value_info("z", TensorProto.FLOAT, None)],
                          [numpy_helper.from_array(v.astype(np.float32), k) for k, v in w.items()])
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)])


def test_convs_with_float_outputs_stay_float_where_int8_does_not_pay():
    """auto: the depthwise conv and the small 1x1 conv, whose float outputs would need ONNX Runtime's
    slow ConvInteger (benchmarks/cpu_int8_layers.py), run the float Conv and the lowering says why;
    the large dense conv stays QLinearConv; the output matches FP32; "all" lowers all three."""
    model = _float_output_convs()
    plan = plan_quantization(model)
    feeds = [{"x": np.random.default_rng(i).standard_normal((2, 64, 16, 16)).astype(np.float32)} for i in range(3)]
    table = calibrate_for_test(model, plan, feeds)
    assert {"dense", "depthwise", "small"} <= set(plan.quantized_nodes)  # the plan (and the TensorRT form) quantize all three
    low = lower_cpu(model, plan, table)
    ops = _ops_by_node(low.model)
    assert ops["dense"] == "QLinearConv" and ops["depthwise"] == "Conv" and ops["small"] == "Conv"
    assert set(low.kept_float) == {"depthwise", "small"} and "depthwise" in low.kept_float["depthwise"]
    assert "64 multiply-adds" in low.kept_float["small"]
    assert {"depthwise", "small"} <= set(low.float_layers)
    assert _sqnr(run(model, feeds), run(low.model, feeds)) > 25
    every = lower_cpu(model, plan, table, layer_rule="all")
    assert [_ops_by_node(every.model)[n] for n in ("dense", "depthwise", "small")] == ["QLinearConv", "ConvInteger", "ConvInteger"]
    assert not every.kept_float


def test_cpu_layer_rule_is_checked():
    model = graphs.mbconv()
    plan = plan_quantization(model)
    table = calibrate_for_test(model, plan, graphs.feeds(model))
    with pytest.raises(ConfigError, match="layer rule"):
        lower_cpu(model, plan, table, layer_rule="some")


def test_a_layer_left_float_after_its_input_was_quantized_leaves_nothing_behind():
    """A Gemm with a 2-D bias has no integer kernel here: its rule quantizes the input, then leaves
    the layer float. Nothing of that ships: no QuantizeLinear nobody reads, no initializer nobody
    reads, and the output is the float Gemm's."""
    from onnx import TensorProto, helper

    rng = np.random.default_rng(0)
    inits = [numpy_helper.from_array(rng.standard_normal((16, 8)).astype(np.float32), "w"), numpy_helper.from_array(rng.standard_normal((1, 8)).astype(np.float32), "b")]
    g = helper.make_graph([helper.make_node("Gemm", ["x", "w", "b"], ["y"], name="fc")], "gemm_2d_bias",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 16])], [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", 8])], inits)
    model = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)])
    feeds = [{"x": rng.standard_normal((4, 16)).astype(np.float32)} for _ in range(2)]
    plan = plan_quantization(model)
    assert plan.quantized_nodes == ["fc"]
    low = lower_cpu(model, plan, calibrate_for_test(model, plan, feeds), weights="uint8")
    assert [n.op_type for n in low.model.graph.node] == ["Gemm"] and low.float_layers == ["fc"]
    assert sorted(t.name for t in low.model.graph.initializer) == ["b", "w"]
    for got, want in zip(run(low.model, feeds), run(model, feeds)):
        np.testing.assert_array_equal(got, want)
