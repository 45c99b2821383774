"""Small ONNX graphs built in code for the sparsity tests (random weights: structure only)."""
from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper


def _model(nodes, inputs, outputs, inits, opset: int = 17) -> onnx.ModelProto:
    graph = helper.make_graph(nodes, "g", inputs, outputs, [numpy_helper.from_array(a, n) for n, a in inits.items()])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


def conv_block(seed: int = 0, c_in: int = 8, c_mid: int = 32, c_out: int = 32, residual: bool = False) -> onnx.ModelProto:
    """Conv -> BN -> Clip -> depthwise Conv -> Mul(per-channel) -> Relu -> Conv [-> Add residual]
    -> GlobalAveragePool -> Flatten -> Gemm(transB) -> Relu -> MatMul."""
    r = np.random.default_rng(seed)
    f = lambda *s: (r.standard_normal(s) * 0.5).astype(np.float32)  # noqa: E731
    inits = {
        "w1": f(c_mid, c_in, 1, 1), "b1": f(c_mid),
        "bn_s": (r.random(c_mid) + 0.5).astype(np.float32), "bn_b": f(c_mid), "bn_m": f(c_mid), "bn_v": (r.random(c_mid) + 0.5).astype(np.float32),
        "lo": np.array(0.0, np.float32), "hi": np.array(6.0, np.float32),
        "wd": f(c_mid, 1, 3, 3), "bd": f(c_mid),
        "scale": f(1, c_mid, 1, 1),
        "w2": f(c_out, c_mid, 3, 3),
        "fc": f(64, c_out), "fcb": f(64),
        "mm": f(64, 32),
    }
    nodes = [
        helper.make_node("Conv", ["x", "w1", "b1"], ["c1"], name="conv1"),
        helper.make_node("BatchNormalization", ["c1", "bn_s", "bn_b", "bn_m", "bn_v"], ["bn"], name="bn"),
        helper.make_node("Clip", ["bn", "lo", "hi"], ["a1"], name="clip"),
        helper.make_node("Conv", ["a1", "wd", "bd"], ["dw"], name="dw", group=c_mid, pads=[1, 1, 1, 1]),
        helper.make_node("Mul", ["dw", "scale"], ["sc"], name="scale"),
        helper.make_node("Relu", ["sc"], ["a2"], name="relu"),
        helper.make_node("Conv", ["a2", "w2"], ["c2"], name="conv2", pads=[1, 1, 1, 1]),
    ]
    last = "c2"
    if residual:
        nodes.append(helper.make_node("Add", ["c2", "c2b"], ["res"], name="res"))
        nodes.insert(0, helper.make_node("Conv", ["x", "wr"], ["c2b"], name="conv_skip", pads=[1, 1, 1, 1]))
        inits["wr"] = f(c_out, c_in, 3, 3)
        last = "res"
    nodes += [
        helper.make_node("GlobalAveragePool", [last], ["gap"], name="gap"),
        helper.make_node("Flatten", ["gap"], ["flat"], name="flatten"),
        helper.make_node("Gemm", ["flat", "fc", "fcb"], ["fco"], name="fc", transB=1),
        helper.make_node("Relu", ["fco"], ["a3"], name="relu_fc"),
        helper.make_node("MatMul", ["a3", "mm"], ["y"], name="head"),
    ]
    return _model(
        nodes,
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", c_in, 8, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 32])],
        inits,
    )


def mlp(seed: int = 0, trans_b: int = 0) -> onnx.ModelProto:
    """[N, T, 32] -> MatMul(32x64) -> Add bias -> Relu -> MatMul(64x48): a transformer-style MLP."""
    r = np.random.default_rng(seed)
    w1 = (r.standard_normal((32, 64)) * 0.3).astype(np.float32)
    inits = {"w1": w1, "b1": (r.standard_normal(64) * 0.1).astype(np.float32), "w2": (r.standard_normal((64, 48)) * 0.3).astype(np.float32)}
    nodes = [
        helper.make_node("MatMul", ["x", "w1"], ["h"], name="fc1"),
        helper.make_node("Add", ["h", "b1"], ["hb"], name="bias1"),
        helper.make_node("Relu", ["hb"], ["a"], name="act"),
        helper.make_node("MatMul", ["a", "w2"], ["y"], name="fc2"),
    ]
    return _model(
        nodes,
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 5, 32])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 5, 48])],
        inits,
    )


def gemm_pair(trans_b: int) -> onnx.ModelProto:
    """Gemm -> Relu -> Gemm with weights stored [K, N] (transB=0) or [N, K] (transB=1)."""
    r = np.random.default_rng(1)
    w1 = (r.standard_normal((32, 24)) * 0.3).astype(np.float32)
    w2 = (r.standard_normal((24, 16)) * 0.3).astype(np.float32)
    if trans_b:
        w1, w2 = w1.T.copy(), w2.T.copy()
    inits = {"w1": w1, "b1": (r.standard_normal(24) * 0.1).astype(np.float32), "w2": w2}
    nodes = [
        helper.make_node("Gemm", ["x", "w1", "b1"], ["h"], name="g1", transB=trans_b),
        helper.make_node("Relu", ["h"], ["a"], name="act"),
        helper.make_node("Gemm", ["a", "w2"], ["y"], name="g2", transB=trans_b),
    ]
    return _model(
        nodes,
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 32])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 16])],
        inits,
    )


def qdq_conv(float_weights: bool, seed: int = 0) -> onnx.ModelProto:
    """Q/DQ conv as written for TensorRT: activations per tensor, weights int8 per output channel
    through DequantizeLinear (``float_weights=False``) or float through Q -> DQ."""
    r = np.random.default_rng(seed)
    w = (r.standard_normal((32, 16, 3, 3)) * 0.2).astype(np.float32)
    s = (np.abs(w).reshape(32, -1).max(1) / 127).astype(np.float32)
    inits = {"xs": np.array(0.02, np.float32), "xz": np.array(0, np.int8), "ws": s, "wz": np.zeros(32, np.int8)}
    nodes = [
        helper.make_node("QuantizeLinear", ["x", "xs", "xz"], ["xq"]),
        helper.make_node("DequantizeLinear", ["xq", "xs", "xz"], ["xd"]),
    ]
    if float_weights:
        inits["w"] = w
        nodes.append(helper.make_node("QuantizeLinear", ["w", "ws", "wz"], ["wq"], axis=0))
        nodes.append(helper.make_node("DequantizeLinear", ["wq", "ws", "wz"], ["wd"], axis=0))
    else:
        inits["wq"] = np.clip(np.rint(w / s[:, None, None, None]), -128, 127).astype(np.int8)
        nodes.append(helper.make_node("DequantizeLinear", ["wq", "ws", "wz"], ["wd"], axis=0))
    nodes.append(helper.make_node("Conv", ["xd", "wd"], ["y"], name="qconv", pads=[1, 1, 1, 1]))
    return _model(
        nodes,
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 16, 8, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 32, 8, 8])],
        inits,
        opset=13,
    )


def run(model: onnx.ModelProto, feed: dict[str, np.ndarray]) -> list[np.ndarray]:
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return sess.run(None, feed)
