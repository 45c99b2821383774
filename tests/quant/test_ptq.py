"""Post-training techniques (quant.ptq) on real models: CLE keeps the float function and evens the
weight ranges; bias correction removes the output shift of weight rounding; both wired in the stage."""
from __future__ import annotations

import dataclasses

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from trtcompress import zoo

ir = pytest.importorskip("onnx_ir")

from trtcompress.quant.placement import plan_quantization  # noqa: E402
from trtcompress.quant.ptq import PtqOptions, weight_grids  # noqa: E402
from trtcompress.quant.ptq.bias_correction import BiasCorrectionConfig, bias_correct  # noqa: E402
from trtcompress.quant.ptq.cle import CrossLayerEqualizationPass  # noqa: E402


def _run(model: onnx.ModelProto, x: np.ndarray) -> np.ndarray:
    s = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return s.run(None, {s.get_inputs()[0].name: x})[0]


def _fashion(limit: int) -> np.ndarray:
    return zoo.fashion_mnist("test", limit=limit)[0]


def _cle(model: onnx.ModelProto) -> tuple[onnx.ModelProto, CrossLayerEqualizationPass]:
    work = ir.serde.deserialize_model(model)
    p = CrossLayerEqualizationPass()
    p(work)
    return ir.serde.serialize_model(work), p


def test_cle_keeps_the_float_function_and_evens_ranges_on_mobilenet_style_model():
    model = onnx.load(zoo.onnx_path("fashion_mbv3"))
    out, p = _cle(model)
    assert p.pairs, "the ReLU-joined pairs of the MobileNetV3-style model were not equalized"
    x = _fashion(64)
    ref, got = _run(model, x), _run(out, x)
    np.testing.assert_allclose(got, ref, rtol=1e-4, atol=1e-4 * np.abs(ref).max())
    for pair in p.pairs:
        before = max(pair["first_out_range_spread"][0], pair["second_in_range_spread"][0])
        after = max(pair["first_out_range_spread"][1], pair["second_in_range_spread"][1])
        assert after <= before + 1e-6, pair
        # equalized: both layers' per-channel ranges are the same after the pass
        assert pair["first_out_range_spread"][1] == pytest.approx(pair["second_in_range_spread"][1], rel=1e-2)
    # HardSwish is not positive-homogeneous: those pairs are listed, not changed
    assert any("HardSwish" in s["why"] for s in p.skipped)


@pytest.mark.torch
@pytest.mark.slow
def test_cle_stops_at_relu6_and_keeps_efficientnet_outputs(efficientnet_onnx):
    from trtcompress.data.base import model_inputs
    from trtcompress.data.readers import ReaderOptions, open_source

    model = onnx.load(efficientnet_onnx)
    out, p = _cle(model)
    relu6 = [s for s in p.skipped if "ReLU6" in s["why"]]
    assert len(relu6) >= 30  # every expand -> dw and dw -> project pair of EfficientNet-Lite0
    assert p.pairs and all(pair["between"] == [] for pair in p.pairs)  # project -> next expand only
    feed = next(iter(open_source("photos:heldout", model_inputs(model), ReaderOptions(batch_size=1, limit=4))))
    ref, got = _run(model, feed["x"]), _run(out, feed["x"])
    np.testing.assert_allclose(got, ref, rtol=1e-4, atol=1e-4 * np.abs(ref).max())
    assert (got.argmax(1) == ref.argmax(1)).all()





def _weight_rounded(model: onnx.ModelProto, grids) -> onnx.ModelProto:
    """The model with each graded layer's weight replaced by its dequantized int8 grid values."""
    work = ir.serde.deserialize_model(model)
    for node in work.graph:
        if node.name in grids:
            v = node.inputs[1]
            w = v.const_value.numpy()
            v.const_value = ir.tensor(grids[node.name].dequantized(w), name=v.name)
    return ir.serde.serialize_model(work)


def test_bias_correction_removes_the_mean_shift_of_weight_rounding():
    # the Fashion CNN: its shifts add up through plain Conv/ReLU/Gemm layers. (On the MobileNetV3-
    # style model the logits' mean shift is already 0.005 and the squeeze-excite gates, which see
    # the corrected float inputs, not the rounded model's, leave it there.)
    model = onnx.load(zoo.onnx_path("fashion_cnn"))
    plan = plan_quantization(model)
    grids = weight_grids(ir.serde.deserialize_model(model), plan, PtqOptions(bias_correction=True))
    calib = zoo.fashion_mnist("train", limit=512)[0]
    work = ir.serde.deserialize_model(model)
    report = bias_correct(work, grids, ({"x": calib[i : i + 128]} for i in range(0, 512, 128)), BiasCorrectionConfig(samples=None))
    assert report["samples"] == 512 and len(report["layers"]) >= 5
    corrected = ir.serde.serialize_model(work)
    ref = _run(model, calib)
    plain = _run(_weight_rounded(model, grids), calib)
    fixed = _run(_weight_rounded(corrected, grids), calib)
    # the mean logit shift per class on the calibration data drops (the layers' shifts add up)
    shift_plain = np.abs((plain - ref).mean(0)).mean()
    shift_fixed = np.abs((fixed - ref).mean(0)).mean()
    assert shift_fixed < 0.5 * shift_plain, (shift_plain, shift_fixed)
    # and on held-out test images too
    x = _fashion(1000)
    ref_t = _run(model, x)
    assert np.abs((_run(_weight_rounded(corrected, grids), x) - ref_t).mean(0)).mean() < np.abs((_run(_weight_rounded(model, grids), x) - ref_t).mean(0)).mean()


def test_bias_correction_of_a_matmul_of_unknown_rank():
    """paddle2onnx-style graphs leave ranks unknown: the shift is the mean over every row of the
    MatMul's columns, whatever the rank."""
    from onnx import TensorProto, helper, numpy_helper

    from trtcompress.quant.ptq.bias_correction import WeightGrid

    rng = np.random.default_rng(2)
    w = rng.standard_normal((8, 4)).astype(np.float32)
    b = rng.standard_normal(4).astype(np.float32)
    g = helper.make_graph(
        [helper.make_node("Relu", ["x"], ["h"], name="act"), helper.make_node("MatMul", ["h", "w"], ["m"], name="fc"), helper.make_node("Add", ["m", "b"], ["y"], name="bias")],
        "unranked", [helper.make_tensor_value_info("x", TensorProto.FLOAT, None)], [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        [numpy_helper.from_array(w, "w"), numpy_helper.from_array(b, "b")])
    work = ir.serde.deserialize_model(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]))
    x = rng.standard_normal((4, 6, 8)).astype(np.float32) + 1  # 3-D
    grid = WeightGrid(axis=1, step=16.0)  # coarse, so the shift is large
    report = bias_correct(work, {"fc": grid}, [{"x": x}], BiasCorrectionConfig(samples=None))
    assert [r["layer"] for r in report["layers"]] == ["fc"]
    expected = b - (np.maximum(x, 0).reshape(-1, 8) @ (grid.dequantized(w) - w)).mean(0)
    got = next(n for n in work.graph if n.name == "bias").inputs[1].const_value.numpy()
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)


def test_cpu_int7_layers_get_twice_the_step():
    model = onnx.load(zoo.onnx_path("fashion_cnn"))
    plan = plan_quantization(model)
    work = ir.serde.deserialize_model(model)
    trt = weight_grids(work, plan, PtqOptions(target="tensorrt"))
    cpu = weight_grids(work, plan, PtqOptions(target="cpu", cpu_weights="int7"))
    first = next(n.name for n in work.graph if n.op_type == "Conv")  # reads the graph input
    assert trt.keys() == cpu.keys() and all(g.step == 1.0 for g in trt.values())
    steps = {n.name: cpu[n.name].step for n in work.graph if n.name in cpu}
    # layers reading a ReLU output keep int8 weights in the CPU form; the others (the graph input,
    # a residual sum) get int7
    relu_fed = {n.name for n in work.graph if n.name in cpu and n.inputs[0].producer() is not None and n.inputs[0].producer().op_type == "Relu"}
    assert relu_fed and all(steps[n] == 1.0 for n in relu_fed)
    assert steps[first] == 2.0


def test_stage_flags_write_both_forms_with_the_techniques(tmp_path):
    from trtcompress.stages.quantize import QuantizeConfig, quantize

    d = tmp_path / "calib"
    d.mkdir()
    x = zoo.fashion_mnist("train", limit=256)[0]
    np.savez(d / "a.npz", x=x)
    model = onnx.load(zoo.onnx_path("fashion_mbv3"))
    base = quantize(model, QuantizeConfig(calib=str(d), progress=False, sensitivity_samples=0))
    r = quantize(model, QuantizeConfig(calib=str(d), progress=False, cle=True, bias_correction=True, sensitivity_samples=0))
    assert r.report["cle"]["pairs"] and r.report["bias_correction"]["layers"]
    cpu = quantize(model, QuantizeConfig(calib=str(d), target="cpu", progress=False, cle=True, bias_correction=True, sensitivity_samples=0))
    assert cpu.report["bias_correction"]["layers"]
    t = _fashion(2000)
    y = zoo.fashion_mnist("test", limit=2000)[1]
    s = ort.SessionOptions()
    s.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL  # the exact Q/DQ arithmetic
    acc = {}
    for key, m in (("base", base.model), ("ptq", r.model)):
        sess = ort.InferenceSession(m.SerializeToString(), s, providers=["CPUExecutionProvider"])
        acc[key] = float(np.mean(sess.run(None, {"x": t})[0].argmax(1) == y))
    acc["cpu"] = float(np.mean(_run(cpu.model, t).argmax(1) == y))
    fp32 = float(np.mean(_run(model, t).argmax(1) == y))
    assert acc["ptq"] >= fp32 - 0.02 and acc["cpu"] >= fp32 - 0.02, (acc, fp32)


def test_smoothquant_keeps_the_float_function_and_evens_activation_channels():
    from trtcompress.model_io import infer_shapes
    from trtcompress.quant.ptq.smoothquant import SmoothQuantConfig, smooth_quant

    model = infer_shapes(onnx.load(zoo.onnx_path("fashion_vit")))
    plan = plan_quantization(model)
    work = ir.serde.deserialize_model(model)
    calib = zoo.fashion_mnist("train", limit=256)[0]
    report = smooth_quant(work, set(plan.quantized_nodes), [{"x": calib}], SmoothQuantConfig(alpha=0.5))
    # every LayerNorm feeding a linear layer (qkv, MLP in) takes the scale; the LayerNorm output is
    # also read by a Shape node, which reads no values
    folded = [r for r in report["activations"] if r["fold"] == "layernorm"]
    assert len(folded) == 6 and all(r["producer"].endswith("LayerNormalization") for r in folded)
    # the others (attention output, MLP out, head) take a Mul before the layer
    assert {r["fold"] for r in report["activations"]} == {"layernorm", "mul"}
    for r in report["activations"]:
        assert r["x_range_spread"][1] < r["x_range_spread"][0]  # the activation's channels even out
    out = ir.serde.serialize_model(work)
    x = _fashion(500)
    ref, got = _run(model, x), _run(out, x)
    np.testing.assert_allclose(got, ref, rtol=1e-4, atol=1e-4 * np.abs(ref).max())
    # alpha 0 changes nothing: s = max|X|^0 / max|W|^1 would not; the scale is 1 / max|W|, which
    # moves the weights' spread into X: the float function still holds
    work0 = ir.serde.deserialize_model(model)
    r0 = smooth_quant(work0, set(plan.quantized_nodes), [{"x": calib}], SmoothQuantConfig(alpha=0.0, mul_fallback=False))
    assert len(r0["activations"]) == 6
    np.testing.assert_allclose(_run(ir.serde.serialize_model(work0), x), ref, rtol=1e-4, atol=1e-4 * np.abs(ref).max())


def test_smoothquant_folds_into_a_previous_linear_layer():
    """Gemm -> Gemm: the first layer's output columns and bias take 1/s."""
    from onnx import TensorProto, helper, numpy_helper

    from trtcompress.quant.ptq.smoothquant import SmoothQuantConfig, smooth_quant

    rng = np.random.default_rng(0)
    w1 = rng.standard_normal((8, 16)).astype(np.float32) * np.array([1] * 15 + [40], np.float32)  # one outlier channel
    b1 = rng.standard_normal(16).astype(np.float32)
    w2 = rng.standard_normal((16, 4)).astype(np.float32)
    g = helper.make_graph(
        [helper.make_node("Gemm", ["x", "w1", "b1"], ["h"], name="fc1"), helper.make_node("Gemm", ["h", "w2"], ["y"], name="fc2")],
        "mlp", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, 8])], [helper.make_tensor_value_info("y", TensorProto.FLOAT, [None, 4])],
        [numpy_helper.from_array(w1, "w1"), numpy_helper.from_array(b1, "b1"), numpy_helper.from_array(w2, "w2")])
    from trtcompress.model_io import infer_shapes

    model = infer_shapes(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]))
    work = ir.serde.deserialize_model(model)
    x = rng.standard_normal((64, 8)).astype(np.float32)
    report = smooth_quant(work, {"fc2"}, [{"x": x}], SmoothQuantConfig(alpha=0.5))
    assert report["activations"][0]["producer"] == "fc1"
    assert report["activations"][0]["x_range_spread"][1] < report["activations"][0]["x_range_spread"][0] / 3
    np.testing.assert_allclose(_run(ir.serde.serialize_model(work), x), _run(model, x), rtol=1e-4, atol=1e-4)


def test_smoothquant_measures_activations_of_unknown_rank():
    """paddle2onnx-style graphs leave ranks unknown; the per-channel maxima need only the last axis."""
    from onnx import TensorProto, helper, numpy_helper

    from trtcompress.quant.ptq.smoothquant import SmoothQuantConfig, smooth_quant

    rng = np.random.default_rng(1)
    w = rng.standard_normal((8, 4)).astype(np.float32)
    g = helper.make_graph(
        [helper.make_node("Relu", ["x"], ["h"], name="act"), helper.make_node("MatMul", ["h", "w"], ["y"], name="fc")],
        "unranked", [helper.make_tensor_value_info("x", TensorProto.FLOAT, None)], [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        [numpy_helper.from_array(w, "w")])
    model = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    work = ir.serde.deserialize_model(model)
    x = rng.standard_normal((4, 6, 8)).astype(np.float32) * np.array([1] * 7 + [50], np.float32)  # 3-D, one outlier channel
    report = smooth_quant(work, {"fc"}, [{"x": x}], SmoothQuantConfig(alpha=0.5))
    spread = report["activations"][0]["x_range_spread"]
    assert spread[1] < spread[0] / 3
    np.testing.assert_allclose(_run(ir.serde.serialize_model(work), x), _run(model, x), rtol=1e-4, atol=1e-4)


def _float_head_model() -> onnx.ModelProto:
    """Conv 16->12 3x3, ReLU, Conv 12->4 1x1 writing the graph output: the CPU form keeps the last
    conv float (a float output and 12 multiply-adds per output), TensorRT has no INT8 kernel for it
    (4 and 12 channels)."""
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    w1 = (rng.standard_normal((12, 16, 3, 3)) * 0.2).astype(np.float32)
    w2 = (rng.standard_normal((4, 12, 1, 1)) * 0.3).astype(np.float32)
    b1, b2 = rng.standard_normal(12).astype(np.float32), rng.standard_normal(4).astype(np.float32)
    g = helper.make_graph(
        [helper.make_node("Conv", ["x", "w1", "b1"], ["h"], name="conv1", pads=[1, 1, 1, 1]), helper.make_node("Relu", ["h"], ["r"], name="relu"),
         helper.make_node("Conv", ["r", "w2", "b2"], ["y"], name="head")],
        "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, 16, 8, 8])], [helper.make_tensor_value_info("y", TensorProto.FLOAT, [None, 4, 8, 8])],
        [numpy_helper.from_array(a, n) for a, n in ((w1, "w1"), (b1, "b1"), (w2, "w2"), (b2, "b2"))])
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])


def test_bias_correction_leaves_layers_the_written_form_keeps_float(tmp_path):
    from trtcompress.stages.quantize import QuantizeConfig, quantize

    model = _float_head_model()
    d = tmp_path / "calib"
    d.mkdir()
    np.savez(d / "a.npz", x=np.random.default_rng(1).standard_normal((64, 16, 8, 8)).astype(np.float32))
    b2 = onnx.numpy_helper.to_array(next(t for t in model.graph.initializer if t.name == "b2"))
    for target in ("cpu", "tensorrt"):
        r = quantize(model, QuantizeConfig(calib=str(d), target=target, bias_correction=True, progress=False, sensitivity_samples=0))
        corrected = [row["layer"] for row in r.report["bias_correction"]["layers"]]
        assert corrected == ["conv1"], (target, corrected)
        head = next(n for n in r.model.graph.node if n.name == "head")
        assert head.op_type == "Conv", target  # float in both forms
        bias = next(t for t in r.model.graph.initializer if t.name == head.input[2])
        np.testing.assert_array_equal(onnx.numpy_helper.to_array(bias), b2)
    plan = plan_quantization(model)
    for target in ("cpu", "tensorrt"):
        assert set(weight_grids(ir.serde.deserialize_model(model), plan, PtqOptions(target=target))) == {"conv1"}


def _shipped_ints(model: onnx.ModelProto, layer: str, target: str, shape: tuple[int, ...]) -> np.ndarray:
    """The integer weight a written form ships for ``layer`` (TensorRT form with int8 weights: the
    DQ's int8 input; CPU form: the layer's weight initializer, uint8 ones shifted back)."""
    from onnx import numpy_helper

    inits = {t.name: t for t in model.graph.initializer}
    if target == "tensorrt":
        node = next(n for n in model.graph.node if n.name == layer)
        dq = next(n for n in model.graph.node if node.input[1] in n.output)
        q = numpy_helper.to_array(inits[dq.input[0]])
    else:
        q = numpy_helper.to_array(inits[f"{layer}__w1_q"])
        q = q.astype(np.int16) - 128 if q.dtype == np.uint8 else q.astype(np.int16)
    if q.shape != shape:
        q = q.T if q.T.shape == shape else q[:, : shape[1]]  # a Gemm's weight transposed; a conv's padded channels
    return q.astype(np.int16)


@pytest.mark.torch
@pytest.mark.parametrize("target", ["tensorrt", "cpu"])
def test_adaround_learned_integers_are_what_each_form_ships(tmp_path, target):
    pytest.importorskip("torch")
    from trtcompress.model_io import infer_shapes
    from trtcompress.quant.ptq import apply_ptq
    from trtcompress.quant.scales import quantize_weight, scales_from_amax, weight_amax
    from trtcompress.stages.quantize import QuantizeConfig, quantize

    model = infer_shapes(onnx.load(zoo.onnx_path("fashion_cnn")))
    plan = plan_quantization(model)
    calib = zoo.fashion_mnist("train", limit=128)[0]
    options = PtqOptions(target=target, cpu_weights="int7", adaround=True, adaround_iterations=30)
    learned, report = apply_ptq(model, plan, options, lambda: [{"x": calib[:64]}, {"x": calib[64:]}])
    rows = [r for r in report["adaround"]["layers"] if "kept" not in r]
    assert len(rows) >= 4 and any(r["flipped"] > 0 for r in rows)
    assert all(r["error_learned"] < r["error_nearest"] for r in rows)
    grids = weight_grids(ir.serde.deserialize_model(model), plan, options)
    if target == "cpu":
        assert any(g.step == 2.0 for g in grids.values())  # an int7 layer is among them
    # the stage writes the learned model as it writes any float model: quantize it as the stage does
    d = tmp_path / "calib"
    d.mkdir()
    np.savez(d / "a.npz", x=calib)
    out = quantize(learned, QuantizeConfig(calib=str(d), target=target, weights="int8", cpu_weights="int7", progress=False, sensitivity_samples=0)).model
    before = {t.name: onnx.numpy_helper.to_array(t) for t in model.graph.initializer}
    after = {t.name: onnx.numpy_helper.to_array(t) for t in learned.graph.initializer}
    nodes = {n.name: n for n in learned.graph.node}
    old_nodes = {n.name: n for n in model.graph.node}
    for r in rows:
        name = r["layer"]
        w_old, w_new, grid = before[old_nodes[name].input[1]], after[nodes[name].input[1]], grids[name]
        shipped = _shipped_ints(out, name, target, w_new.shape)
        scale = scales_from_amax(weight_amax(w_old, grid.axis)) * np.float32(grid.step)
        shape = [1] * w_new.ndim
        shape[grid.axis % w_new.ndim] = -1
        scale = scale.reshape(shape)
        learned_ints = np.rint(w_new / scale).astype(np.int16)
        # the learned weights are grid points (but each channel's largest, which sets the scale)
        free = np.abs(w_old) < weight_amax(w_old, grid.axis).reshape(shape)
        np.testing.assert_allclose((learned_ints * scale)[free], w_new[free], rtol=2e-7, atol=0)
        np.testing.assert_array_equal(shipped, learned_ints)  # and each form ships those integers
        nearest = quantize_weight(w_old, scale, grid.axis).astype(np.int16)
        assert (np.mean(shipped != nearest) > 0) == (r["flipped"] > 0)


@pytest.mark.torch
def test_adaround_learns_every_weighted_matmul_of_a_transformer_and_ships_it(tmp_path):
    """A transformer's MatMul/Gemm layers read token rows (3-D inputs): each layer with a constant
    weight is learned on its own rows and its output error there falls, and the TensorRT form ships
    exactly the learned integers with every MatMul (the attention products too) INT8."""
    pytest.importorskip("torch")
    from trtcompress.model_io import infer_shapes
    from trtcompress.quant.ptq import apply_ptq
    from trtcompress.quant.scales import scales_from_amax, weight_amax
    from trtcompress.stages.quantize import QuantizeConfig, quantize

    model = infer_shapes(onnx.load(zoo.onnx_path("fashion_vit")))
    plan = plan_quantization(model)
    calib = zoo.fashion_mnist("train", limit=64)[0]
    options = PtqOptions(adaround=True, adaround_iterations=20)
    learned, report = apply_ptq(model, plan, options, lambda: [{"x": calib}])
    inits = {t.name for t in model.graph.initializer}
    weighted = {n.name for n in model.graph.node if n.op_type in ("MatMul", "Gemm") and n.input[1] in inits}
    rows = {r["layer"]: r for r in report["adaround"]["layers"]}
    assert weighted <= set(rows) and len(weighted) == 13 and not report["adaround"]["skipped"]
    assert all(r["error_learned"] < r["error_nearest"] for r in rows.values() if "kept" not in r)
    assert sum("kept" not in rows[n] for n in weighted) >= 10
    grids = weight_grids(ir.serde.deserialize_model(model), plan, options)
    d = tmp_path / "calib"
    d.mkdir()
    np.savez(d / "a.npz", x=calib)
    out = quantize(learned, QuantizeConfig(calib=str(d), target="tensorrt", weights="int8", progress=False, sensitivity_samples=0)).model
    producer = {o: n.op_type for n in out.graph.node for o in n.output}
    matmuls = [n for n in out.graph.node if n.op_type in ("MatMul", "Gemm")]
    assert len(matmuls) == 19 and all(producer.get(x) == "DequantizeLinear" for n in matmuls for x in n.input[:2])
    after = {t.name: onnx.numpy_helper.to_array(t) for t in learned.graph.initializer}
    nodes = {n.name: n for n in learned.graph.node}
    for name in weighted:
        if "kept" in rows[name]:
            continue
        w = after[nodes[name].input[1]]
        axis = grids[name].axis
        shape = [1] * w.ndim
        shape[axis % w.ndim] = -1
        scale = scales_from_amax(weight_amax(w, axis)).reshape(shape)
        ints = np.rint(w / scale)
        if rows[name]["flipped"] > 0:  # the learned weights are written on the grid
            np.testing.assert_allclose(ints * scale, w, rtol=2e-7, atol=0)
        np.testing.assert_array_equal(_shipped_ints(out, name, "tensorrt", w.shape), ints.astype(np.int16))


def test_adaround_without_torch_is_one_line_naming_the_extra(tmp_path, monkeypatch):
    import sys

    from trtcompress.errors import MissingDependencyError
    from trtcompress.stages.quantize import QuantizeConfig, quantize

    d = tmp_path / "calib"
    d.mkdir()
    np.savez(d / "a.npz", x=zoo.fashion_mnist("train", limit=32)[0])
    model = onnx.load(zoo.onnx_path("fashion_cnn"))
    monkeypatch.setitem(sys.modules, "torch", None)  # import torch now fails
    with pytest.raises(MissingDependencyError, match=r"trtcompress\[torch\]") as e:
        quantize(model, QuantizeConfig(calib=str(d), adaround=True, progress=False, sensitivity_samples=0))
    assert "\n" not in str(e.value) and "--adaround" in str(e.value)
    # without --adaround the stage needs no torch, with the other techniques too
    r = quantize(model, QuantizeConfig(calib=str(d), bias_correction=True, progress=False, sensitivity_samples=0))
    assert r.report["bias_correction"]["layers"]


@pytest.mark.torch
def test_cli_adaround_reports_each_layer_compactly(tmp_path):
    pytest.importorskip("torch")
    import json
    import subprocess
    import sys
    from pathlib import Path

    d = tmp_path / "calib"
    d.mkdir()
    np.savez(d / "a.npz", x=zoo.fashion_mnist("train", limit=64)[0])
    exe = Path(sys.executable).parent / "trtcompress"
    out = subprocess.run([str(exe), "quantize", str(zoo.onnx_path("fashion_cnn")), "--calib", str(d), "--adaround", "--adaround-iterations", "10",
                          "--bias-correction", "--sensitivity-samples", "0", "--no-progress", "-o", str(tmp_path / "q.onnx"), "--report", str(tmp_path / "r.json")],
                         capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr
    assert "AdaRound: " in out.stdout and "layers learned (median relative output error" in out.stdout and "bias correction: " in out.stdout
    rows = json.loads((tmp_path / "r.json").read_text())["layers"]
    learned = [r for r in rows if "adaround" in r["techniques"]]
    assert learned and all(r["output_error"][1] < r["output_error"][0] for r in learned)
    assert all("bias_correction" in r["techniques"] and "mean_abs_shift" in r for r in rows)


@pytest.mark.torch
def test_layers_the_accuracy_target_keeps_float_get_their_float_weights_back(tmp_path):
    pytest.importorskip("torch")
    from trtcompress.stages.quantize import QuantizeConfig, quantize

    calib, held = tmp_path / "calib", tmp_path / "eval"
    calib.mkdir()
    held.mkdir()
    np.savez(calib / "a.npz", x=zoo.fashion_mnist("train", limit=64)[0])
    np.savez(held / "a.npz", x=_fashion(64))
    model = onnx.load(zoo.onnx_path("fashion_cnn"))
    r = quantize(model, QuantizeConfig(calib=str(calib), eval=str(held), accuracy_target="cosine>=0.99999", adaround=True, adaround_iterations=20,
                                       bias_correction=True, weights="int8", progress=False))
    kept = r.report["accuracy_target"]["kept_float"]
    learned = {x["layer"] for x in r.report["adaround"]["layers"] if "kept" not in x}
    assert kept and learned & set(kept)
    original = {t.name: onnx.numpy_helper.to_array(t) for t in model.graph.initializer}
    shipped = {t.name: onnx.numpy_helper.to_array(t) for t in r.model.graph.initializer}
    old_nodes = {n.name: n for n in model.graph.node}
    for node in r.model.graph.node:
        if node.name in kept and node.name in old_nodes and node.op_type in ("Conv", "Gemm"):
            for i in (1, 2):  # a float layer reads its float weight and bias, not the rounding-aware ones
                np.testing.assert_array_equal(shipped[node.input[i]], original[old_nodes[node.name].input[i]])
    # and the target is scored against the user's FP32 model
    assert r.report["accuracy_target"]["evaluations"]


@pytest.mark.torch
def test_accuracy_target_tries_the_techniques_before_float_layers(tmp_path):
    pytest.importorskip("torch")
    from trtcompress.stages.quantize import QuantizeConfig, quantize

    calib, held = tmp_path / "calib", tmp_path / "eval"
    calib.mkdir()
    held.mkdir()
    np.savez(calib / "a.npz", x=zoo.fashion_mnist("train", limit=64)[0])
    np.savez(held / "a.npz", x=_fashion(64))
    model = onnx.load(zoo.onnx_path("fashion_cnn"))
    cfg = QuantizeConfig(calib=str(calib), eval=str(held), accuracy_target="cosine>=0.99999", adaround_iterations=20, progress=False)
    r = quantize(model, cfg)
    tried = r.report["accuracy_target"]["tried"]
    assert [t["techniques"] for t in tried] == [[], ["bias_correction", "adaround"]]
    chosen = next(t for t in tried if t["chosen"])
    assert chosen["kept_float"] == min(t["kept_float"] for t in tried if t["met"] == chosen["met"])
    assert chosen["kept_float"] == len(r.report["accuracy_target"]["kept_float"])
    assert ("adaround" in r.report) == (chosen["techniques"] != [])
    # off: one run, nothing tried
    r = quantize(model, dataclasses.replace(cfg, accuracy_techniques=False))
    assert "tried" not in r.report["accuracy_target"] and "adaround" not in r.report
