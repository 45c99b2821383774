"""FP32 -> FP16 ONNX conversion for strongly typed TensorRT, checked in ONNX Runtime against FP32."""
from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

from trtc_support import tiny_classifier
from trtcompress.trt.fp16 import KEEP_FP32, convert_to_fp16


def _encoder_block(seed: int = 0) -> onnx.ModelProto:
    """x[N,8,16] -> MatMul -> LayerNorm -> attention-like Softmax(QK^T) -> Q/DQ -> MatMul -> ReduceMean."""
    rng = np.random.default_rng(seed)
    inits = [
        numpy_helper.from_array(rng.standard_normal((16, 16)).astype(np.float32) * 0.3, "w1"),
        numpy_helper.from_array(np.ones(16, np.float32), "gamma"),
        numpy_helper.from_array(np.zeros(16, np.float32), "beta"),
        numpy_helper.from_array(np.float32(0.02), "s"),
        numpy_helper.from_array(np.int8(0), "zp"),
        numpy_helper.from_array(rng.standard_normal((16, 16)).astype(np.float32) * 0.3, "w2"),
        numpy_helper.from_array(np.array([-1], np.int64), "axes"),
    ]
    nodes = [
        helper.make_node("MatMul", ["x", "w1"], ["h"]),
        helper.make_node("LayerNormalization", ["h", "gamma", "beta"], ["ln"], axis=-1),
        helper.make_node("Transpose", ["ln"], ["lnT"], perm=[0, 2, 1]),
        helper.make_node("MatMul", ["ln", "lnT"], ["scores"]),
        helper.make_node("Softmax", ["scores"], ["p"], axis=-1),
        helper.make_node("MatMul", ["p", "ln"], ["ctx"]),
        helper.make_node("QuantizeLinear", ["ctx", "s", "zp"], ["q"]),
        helper.make_node("DequantizeLinear", ["q", "s", "zp"], ["dq"]),
        helper.make_node("MatMul", ["dq", "w2"], ["o"]),
        helper.make_node("Relu", ["o"], ["r"]),
        helper.make_node("ReduceMean", ["r", "axes"], ["y"], keepdims=0),
    ]
    graph = helper.make_graph(
        nodes, "block",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 8, 16])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 8])],
        inits,
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])


def _run(model: onnx.ModelProto, feed):
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    return ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"]).run(None, feed)[0]


def _input_types(model: onnx.ModelProto) -> dict[str, int]:
    inferred = onnx.shape_inference.infer_shapes(model, strict_mode=True)
    g = inferred.graph
    types = {v.name: v.type.tensor_type.elem_type for v in list(g.input) + list(g.output) + list(g.value_info)}
    types.update({t.name: t.data_type for t in g.initializer})
    return types


def test_encoder_block_runs_in_fp16_with_sensitive_ops_fp32():
    model = _encoder_block()
    x = np.random.default_rng(1).standard_normal((4, 8, 16)).astype(np.float32)
    ref = _run(model, {"x": x})
    before = model.SerializeToString()
    res = convert_to_fp16(model)
    assert model.SerializeToString() == before  # the input model is left as it was
    onnx.checker.check_model(res.model, full_check=True)
    got = _run(res.model, {"x": x})
    assert got.dtype == np.float32 and got.shape == ref.shape  # the interface stays float32
    assert np.max(np.abs(got - ref)) < 2e-2 * max(1.0, np.max(np.abs(ref)))
    assert np.max(np.abs(got - ref)) > 0  # it really computed in float16
    types = _input_types(res.model)
    by_op = {n.op_type: n for n in res.model.graph.node}
    for op in ("LayerNormalization", "Softmax", "ReduceMean", "QuantizeLinear"):
        assert types[by_op[op].input[0]] == TensorProto.FLOAT, op
    assert types[by_op["DequantizeLinear"].output[0]] == TensorProto.FLOAT
    assert types["s"] == TensorProto.FLOAT and types["gamma"] == TensorProto.FLOAT  # Q/DQ scale, LN params
    assert types["w1"] == TensorProto.FLOAT16 and types["w2"] == TensorProto.FLOAT
    mm = {n.output[0]: n for n in res.model.graph.node if n.op_type == "MatMul"}
    assert all(types[i] == TensorProto.FLOAT16 for o in ("h", "scores") for i in mm[o].input)
    # the layers around the Q/DQ keep float32 so TensorRT fuses DQ -> MatMul into INT8
    assert [types[i] for i in mm["o"].input] == [TensorProto.FLOAT, TensorProto.FLOAT]
    assert types["ctx"] == TensorProto.FLOAT and by_op["QuantizeLinear"].input[0] == "ctx"
    assert res.casts_added >= 4 and not res.clipped_initializers


def test_cnn_accuracy_against_fp32(tmp_path):
    model = onnx.load(tiny_classifier(tmp_path / "tiny.onnx"))
    x = np.random.default_rng(0).standard_normal((8, 3, 16, 16)).astype(np.float32)
    ref = _run(model, {"x": x})
    res = convert_to_fp16(model)
    got = _run(res.model, {"x": x})
    assert np.max(np.abs(got - ref)) < 1e-2 * max(1.0, np.max(np.abs(ref)))
    assert (got.argmax(1) == ref.argmax(1)).all()
    conv = next(n for n in res.model.graph.node if n.op_type == "Conv")
    assert _input_types(res.model)[conv.input[1]] == TensorProto.FLOAT16
    assert set(KEEP_FP32) >= {"LayerNormalization", "Softmax", "ReduceMean", "QuantizeLinear", "DequantizeLinear"}


def test_out_of_range_weights_are_clipped_and_reported(tmp_path):
    model = onnx.load(tiny_classifier(tmp_path / "tiny.onnx"))
    fc = next(t for t in model.graph.initializer if t.name == "fc")
    big = numpy_helper.to_array(fc).copy()
    big[0, 0] = 1e6
    fc.CopyFrom(numpy_helper.from_array(big, "fc"))
    res = convert_to_fp16(model)
    assert res.clipped_initializers == ["fc"]


def test_real_models_on_real_images_keep_their_predictions():
    """The zoo's Fashion-MNIST CNN and ViT (LayerNorm, Softmax, Erf, ReduceMean, Gather/Shape
    arithmetic) on 256 held-out images: float16 keeps every top-1 and the logits within 1e-2."""
    from trtcompress import zoo

    x, _ = zoo.fashion_mnist("test", limit=256)
    for name in ("fashion_cnn", "fashion_vit"):
        model = onnx.load(zoo.onnx_path(name))
        feed = {model.graph.input[0].name: x}
        ref = _run(model, feed)
        res = convert_to_fp16(model)
        got = _run(res.model, feed)
        assert (got.argmax(1) == ref.argmax(1)).all(), name
        assert np.abs(got - ref).max() < 1e-2, name
        if name == "fashion_vit":
            kept = {n.op_type for n in res.model.graph.node if n.name in set(res.kept_fp32_nodes)}
            assert {"LayerNormalization", "Softmax", "ReduceMean"} <= kept


def test_quantized_layers_keep_their_qdq_interface():
    from trt_graphs import conv_net

    model = conv_net(qdq=True)
    x = np.random.default_rng(2).standard_normal((4, 3, 16, 16)).astype(np.float32)
    res = convert_to_fp16(model)
    types = _input_types(res.model)
    conv = {n.name: n for n in res.model.graph.node if n.op_type == "Conv"}
    assert types[conv["conv1"].input[1]] == TensorProto.FLOAT16  # unquantized: float16
    assert [types[i] for i in conv["conv2"].input] == [TensorProto.FLOAT, TensorProto.FLOAT]  # DQ -> Conv untouched
    dq = [n for n in res.model.graph.node if n.op_type == "DequantizeLinear"]
    assert all(n.output[0] in conv["conv2"].input for n in dq)  # no Cast between a DQ and its layer
    ref, got = _run(model, {"x": x}), _run(res.model, {"x": x})
    assert np.abs(got - ref).max() < 2e-2 * max(1.0, np.abs(ref).max())
