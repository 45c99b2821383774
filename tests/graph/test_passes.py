"""Each normalisation pass on small graphs built with onnx.helper: where a rewrite is unsafe it does
not happen (MaxPool reading negative values, AveragePool excluding its own pads, non-zero or
channel pads, Q/DQ weights, overridable initializers, dynamic dims), and where it happens ONNX
Runtime computes the same outputs before and after."""
from __future__ import annotations

import collections

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from trtcompress.graph.normalize import REWRITES, normalize
from trtcompress.stages.normalize import REWRITE_SWITCHES

RNG = np.random.default_rng(0)


def _model(nodes, inputs, outputs, inits=(), opset=17):
    g = helper.make_graph(nodes, "g", inputs, outputs, [numpy_helper.from_array(a, n) for n, a in inits])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)])
    m.ir_version = 8
    return m


def _x(name="x", shape=("N", 4, 8, 8), dtype=TensorProto.FLOAT):
    return helper.make_tensor_value_info(name, dtype, list(shape))


def _y(name="y"):
    return helper.make_tensor_value_info(name, TensorProto.FLOAT, None)


def _ops(m):
    return collections.Counter(n.op_type for n in m.graph.node)


def _same(a: onnx.ModelProto, b: onnx.ModelProto, feed: dict) -> None:
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    ra = ort.InferenceSession(a.SerializeToString(), so).run(None, feed)
    rb = ort.InferenceSession(b.SerializeToString(), so).run(None, feed)
    for u, v in zip(ra, rb):
        np.testing.assert_allclose(u, v, rtol=1e-5, atol=1e-5)


def _pad(pads, value=None):
    inits = [("pads", np.array(pads, np.int64))]
    inputs = ["x", "pads"]
    if value is not None:
        inits.append(("pv", np.array(value, np.float32)))
        inputs.append("pv")
    return helper.make_node("Pad", inputs, ["p"], mode="constant"), inits


FEED = {"x": RNG.standard_normal((2, 4, 8, 8)).astype(np.float32)}


def test_switch_names_match_the_rewrites():
    assert tuple(REWRITES) == REWRITE_SWITCHES


def test_asymmetric_zero_pad_folds_into_conv():
    pad, inits = _pad([0, 0, 0, 1, 0, 0, 2, 1])
    w = RNG.standard_normal((6, 4, 3, 3)).astype(np.float32)
    m = _model([pad, helper.make_node("Conv", ["p", "w"], ["y"], pads=[1, 0, 0, 0])], [_x()], [_y()], inits + [("w", w)])
    out, report = normalize(m, {})
    assert _ops(out) == {"Conv": 1}
    assert list(out.graph.node[0].attribute[0].ints) == [1, 1, 2, 1]
    _same(m, out, FEED)


@pytest.mark.parametrize("pads,value", [([0, 0, 1, 1, 0, 0, 1, 1], 1.0), ([0, 1, 1, 1, 0, 0, 1, 1], None), ([0, 0, -1, 0, 0, 0, 0, 0], None)])
def test_pads_that_are_not_spatial_zeros_stay(pads, value):
    pad, inits = _pad(pads, value)
    w = RNG.standard_normal((6, 5 if pads[1] else 4, 3, 3)).astype(np.float32)
    m = _model([pad, helper.make_node("Conv", ["p", "w"], ["y"])], [_x()], [_y()], inits + [("w", w)])
    out, _ = normalize(m, {})
    assert _ops(out)["Pad"] == 1
    _same(m, out, FEED)


def test_zero_pad_stays_before_maxpool_reading_negative_values():
    pad, inits = _pad([0, 0, 1, 1, 0, 0, 1, 1])
    m = _model([pad, helper.make_node("MaxPool", ["p"], ["y"], kernel_shape=[3, 3])], [_x()], [_y()], inits)
    out, _ = normalize(m, {})
    assert _ops(out)["Pad"] == 1  # 0 would win over negative inputs where -inf padding would not
    _same(m, out, FEED)


def test_zero_pad_folds_into_maxpool_reading_a_relu():
    pad, inits = _pad([0, 0, 1, 1, 0, 0, 1, 1])
    pad.input[0] = "r"
    m = _model([helper.make_node("Relu", ["x"], ["r"]), pad, helper.make_node("MaxPool", ["p"], ["y"], kernel_shape=[3, 3])], [_x()], [_y()], inits)
    out, _ = normalize(m, {})
    assert _ops(out) == {"Relu": 1, "MaxPool": 1}
    _same(m, out, FEED)


@pytest.mark.parametrize("own_pads,include,folds", [([0, 0, 0, 0], 0, True), ([1, 1, 1, 1], 1, True), ([1, 1, 1, 1], 0, False)])
def test_averagepool_folds_only_when_it_counts_every_padded_cell(own_pads, include, folds):
    pad, inits = _pad([0, 0, 1, 0, 0, 0, 0, 1])
    m = _model([pad, helper.make_node("AveragePool", ["p"], ["y"], kernel_shape=[3, 3], pads=own_pads, count_include_pad=include)], [_x()], [_y()], inits)
    out, _ = normalize(m, {})
    assert (_ops(out)["Pad"] == 0) == folds
    _same(m, out, FEED)


def _bn_inits(c):
    return [("s", RNG.random(c).astype(np.float32) + 0.5), ("b", RNG.standard_normal(c).astype(np.float32)),
            ("m", RNG.standard_normal(c).astype(np.float32)), ("v", RNG.random(c).astype(np.float32) + 0.5)]


@pytest.mark.parametrize("op", ["Conv", "ConvTranspose"])
def test_batchnorm_folds_into_grouped_conv_and_conv_transpose(op):
    w = RNG.standard_normal((4, 3, 3, 3) if op == "ConvTranspose" else (6, 2, 3, 3)).astype(np.float32)  # group 2: 6 outputs
    conv = helper.make_node(op, ["x", "w", "cb"], ["c"], group=2)
    bn = helper.make_node("BatchNormalization", ["c", "s", "b", "m", "v"], ["y"], epsilon=1e-3)
    m = _model([conv, bn], [_x()], [_y()], [("w", w), ("cb", RNG.standard_normal(6).astype(np.float32))] + _bn_inits(6))
    out, report = normalize(m, {})
    assert _ops(out) == {op: 1} and report["rewrites"]["fold_batchnorm"][op] == 1
    assert out.graph.output[0].name == "y"
    _same(m, out, FEED)


def test_batchnorm_folds_into_gemm_with_alpha_beta_and_transposed_weight():
    w = RNG.standard_normal((5, 8)).astype(np.float32)
    gemm = helper.make_node("Gemm", ["x", "w", "c"], ["g"], transB=1, alpha=0.5, beta=2.0)
    bn = helper.make_node("BatchNormalization", ["g", "s", "b", "m", "v"], ["h"])
    m = _model([gemm, bn, helper.make_node("Relu", ["h"], ["y"])], [_x(shape=("N", 8))], [_y()], [("w", w), ("c", RNG.standard_normal(5).astype(np.float32))] + _bn_inits(5))
    out, _ = normalize(m, {})
    assert _ops(out) == {"Gemm": 1, "Relu": 1}
    _same(m, out, {"x": RNG.standard_normal((3, 8)).astype(np.float32)})


def test_batchnorm_stays_when_the_conv_output_has_another_reader():
    conv = helper.make_node("Conv", ["x", "w"], ["c"])
    bn = helper.make_node("BatchNormalization", ["c", "s", "b", "m", "v"], ["y"])
    m = _model([conv, bn, helper.make_node("Relu", ["c"], ["z"])], [_x()], [_y(), _y("z")], [("w", RNG.standard_normal((6, 4, 1, 1)).astype(np.float32))] + _bn_inits(6))
    out, _ = normalize(m, {})
    assert _ops(out)["BatchNormalization"] == 1
    _same(m, out, FEED)


def test_static_shape_arithmetic_folds_and_the_dynamic_batch_stays():
    """Reshape(x, [Shape(x)[0], C*H*W computed from Shape(x)[1:]]): the batch read stays, the rest folds."""
    nodes = [
        helper.make_node("Shape", ["x"], ["s"]),
        helper.make_node("Gather", ["s", "i0"], ["n"], axis=0),
        helper.make_node("Slice", ["s", "one", "big"], ["chw"]),
        helper.make_node("ReduceProd", ["chw"], ["k"], keepdims=1),
        helper.make_node("Unsqueeze", ["n", "zero"], ["n1"]),
        helper.make_node("Concat", ["n1", "k"], ["shape"], axis=0),
        helper.make_node("Reshape", ["x", "shape"], ["y"]),
    ]
    inits = [("i0", np.array(0, np.int64)), ("one", np.array([1], np.int64)), ("big", np.array([2**62], np.int64)), ("zero", np.array([0], np.int64))]
    m = _model(nodes, [_x()], [_y()], inits)
    out, report = normalize(m, {})
    ops = _ops(out)
    assert ops["Slice"] == 0 and ops["ReduceProd"] == 0 and ops["Shape"] == 1 and ops["Gather"] == 1
    assert report["rewrites"]["fold_constants"]["shapes"] >= 1
    _same(m, out, FEED)
    _same(m, out, {"x": RNG.standard_normal((5, 4, 8, 8)).astype(np.float32)})


def test_noops_go_and_dequantized_weights_and_overridable_initializers_stay():
    w8 = RNG.integers(-127, 128, (4, 4, 1, 1)).astype(np.int8)
    nodes = [
        helper.make_node("Cast", ["x"], ["a"], to=TensorProto.FLOAT),
        helper.make_node("Dropout", ["a"], ["b"]),
        helper.make_node("Reshape", ["b", "same"], ["c"]),
        helper.make_node("Identity", ["c"], ["d"]),
        helper.make_node("DequantizeLinear", ["w8", "ws"], ["w"]),
        helper.make_node("Conv", ["d", "w"], ["e"]),
        helper.make_node("Mul", ["gain", "two"], ["g2"]),  # gain is a graph input with a default: not a constant
        helper.make_node("Mul", ["e", "g2"], ["y"]),
    ]
    inits = [("same", np.array([-1, 4, 8, 8], np.int64)), ("w8", w8), ("ws", np.array(0.01, np.float32)), ("gain", np.array([1.5], np.float32)), ("two", np.array([2.0], np.float32))]
    m = _model(nodes, [_x(), helper.make_tensor_value_info("gain", TensorProto.FLOAT, [1])], [_y()], inits)
    out, report = normalize(m, {})
    assert _ops(out) == {"DequantizeLinear": 1, "Conv": 1, "Mul": 2}
    assert report["rewrites"]["remove_noops"]["Cast"] == report["rewrites"]["remove_noops"]["Dropout"] == report["rewrites"]["remove_noops"]["Reshape"] == 1
    _same(m, out, FEED)
    _same(m, out, {**FEED, "gain": np.array([3.0], np.float32)})


def test_duplicate_initializers_are_shared_and_dead_ones_removed():
    w = RNG.standard_normal((4, 4, 1, 1)).astype(np.float32)
    nodes = [helper.make_node("Conv", ["x", "w1"], ["a"]), helper.make_node("Conv", ["a", "w2"], ["y"])]
    m = _model(nodes, [_x()], [_y()], [("w1", w), ("w2", w.copy()), ("unused", w)])
    out, _ = normalize(m, {})
    assert [t.name for t in out.graph.initializer] == ["w1"]
    _same(m, out, FEED)


def test_normalize_leaves_the_callers_model_untouched():
    """onnx-ir wraps the caller's protobuf lazily: a pass that renamed a Constant's tensor wrote
    the new name into the user's model (seen on BERT)."""
    from onnx import TensorProto, helper

    from trtcompress.graph.normalize import REWRITES, normalize

    c = helper.make_node("Constant", [], ["c"], value=helper.make_tensor("t_inner", TensorProto.FLOAT, [2], [1.0, 2.0]))
    add = helper.make_node("Add", ["x", "c"], ["y"])
    g = helper.make_graph([c, add], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 2])])
    model = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    before = model.SerializeToString()
    out, _ = normalize(model, {k: True for k in REWRITES})
    assert model.SerializeToString() == before
    assert [n.op_type for n in out.graph.node] == ["Add"]
