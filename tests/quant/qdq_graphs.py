"""Tiny ONNX graphs built in code for the quantization tests (random weights: structure only)."""
from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

OPSET = 17


def _model(nodes, inputs, outputs, inits, opset: int = OPSET) -> onnx.ModelProto:
    g = helper.make_graph(nodes, "g", inputs, outputs, [numpy_helper.from_array(np.asarray(v), k) for k, v in inits.items()])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)])
    m.ir_version = 8
    onnx.checker.check_model(m)
    return m


def _f(shape, rng, scale=0.3):
    return (rng.standard_normal(shape) * scale).astype(np.float32)


def mbconv(seed: int = 0, c: int = 16, opset: int = OPSET) -> onnx.ModelProto:
    """stem Conv -> ReLU6 -> [expand 1x1 -> ReLU6 -> depthwise 3x3 -> ReLU6 -> project 1x1] + skip
    -> Pad -> MaxPool -> Conv -> Relu -> GlobalAveragePool -> Flatten -> Gemm: EfficientNet-like."""
    rng = np.random.default_rng(seed)
    e = 2 * c
    inits = {
        "w0": _f((c, 3, 3, 3), rng), "b0": _f((c,), rng, 0.1),
        "w1": _f((e, c, 1, 1), rng), "b1": _f((e,), rng, 0.1),
        "w2": _f((e, 1, 3, 3), rng), "b2": _f((e,), rng, 0.1),
        "w3": _f((c, e, 1, 1), rng), "b3": _f((c,), rng, 0.1),
        "w4": _f((c, c, 3, 3), rng), "b4": _f((c,), rng, 0.1),
        "fc": _f((10, c), rng), "fb": _f((10,), rng, 0.1),
        "lo": np.array(0.0, np.float32), "hi": np.array(6.0, np.float32),
        "pads": np.array([0, 0, 1, 1, 0, 0, 1, 1], np.int64),
    }
    nodes = [
        helper.make_node("Conv", ["x", "w0", "b0"], ["c0"], name="stem", pads=[1, 1, 1, 1]),
        helper.make_node("Clip", ["c0", "lo", "hi"], ["a0"], name="stem_relu6"),
        helper.make_node("Conv", ["a0", "w1", "b1"], ["c1"], name="expand"),
        helper.make_node("Clip", ["c1", "lo", "hi"], ["a1"], name="expand_relu6"),
        helper.make_node("Conv", ["a1", "w2", "b2"], ["c2"], name="depthwise", group=e, pads=[1, 1, 1, 1]),
        helper.make_node("Clip", ["c2", "lo", "hi"], ["a2"], name="depthwise_relu6"),
        helper.make_node("Conv", ["a2", "w3", "b3"], ["c3"], name="project"),
        helper.make_node("Add", ["c3", "a0"], ["s"], name="residual"),
        helper.make_node("Pad", ["s", "pads"], ["p"], name="pad"),
        helper.make_node("MaxPool", ["p"], ["mp"], name="pool", kernel_shape=[2, 2], strides=[2, 2]),
        helper.make_node("Conv", ["mp", "w4", "b4"], ["c4"], name="head"),
        helper.make_node("Relu", ["c4"], ["a4"], name="head_relu"),
        helper.make_node("GlobalAveragePool", ["a4"], ["g"], name="gap"),
        helper.make_node("Flatten", ["g"], ["f"], name="flatten"),
        helper.make_node("Gemm", ["f", "fc", "fb"], ["logits"], name="fc", transB=1),
    ]
    return _model(
        nodes,
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, 16, 16])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", 10])],
        inits,
        opset,
    )


def encoder(seed: int = 0, d: int = 16, t: int = 8) -> onnx.ModelProto:
    """One pre-LN transformer encoder block with an attention mask: LayerNorm, Q/K/V MatMuls,
    scores + mask -> Softmax, attention @ V, output projection + residual, GELU (Erf) MLP."""
    rng = np.random.default_rng(seed)
    inits = {
        "ln_s": np.ones(d, np.float32), "ln_b": np.zeros(d, np.float32),
        "wq": _f((d, d), rng), "wk": _f((d, d), rng), "wv": _f((d, d), rng), "wo": _f((d, d), rng), "bo": _f((d,), rng, 0.1),
        "w1": _f((d, 2 * d), rng), "b1": _f((2 * d,), rng, 0.1), "w2": _f((2 * d, d), rng),
        "scale": np.array(1.0 / np.sqrt(d), np.float32), "one": np.array(1.0, np.float32), "neg": np.array(-10000.0, np.float32),
        "half": np.array(0.5, np.float32), "rsqrt2": np.array(1 / np.sqrt(2), np.float32),
    }
    nodes = [
        helper.make_node("LayerNormalization", ["x", "ln_s", "ln_b"], ["h"], name="ln1", axis=-1),
        helper.make_node("MatMul", ["h", "wq"], ["q"], name="q_proj"),
        helper.make_node("MatMul", ["h", "wk"], ["k"], name="k_proj"),
        helper.make_node("MatMul", ["h", "wv"], ["v"], name="v_proj"),
        helper.make_node("Transpose", ["k"], ["kt"], name="k_t", perm=[0, 2, 1]),
        helper.make_node("MatMul", ["q", "kt"], ["scores"], name="qk"),
        helper.make_node("Mul", ["scores", "scale"], ["scaled"], name="scale"),
        helper.make_node("Sub", ["one", "mask"], ["inv"], name="mask_inv"),
        helper.make_node("Mul", ["inv", "neg"], ["bias"], name="mask_bias"),
        helper.make_node("Add", ["scaled", "bias"], ["masked"], name="mask_add"),
        helper.make_node("Softmax", ["masked"], ["probs"], name="softmax", axis=-1),
        helper.make_node("MatMul", ["probs", "v"], ["ctx"], name="av"),
        helper.make_node("MatMul", ["ctx", "wo"], ["o"], name="o_proj"),
        helper.make_node("Add", ["o", "bo"], ["ob"], name="o_bias"),
        helper.make_node("Add", ["x", "ob"], ["r1"], name="residual1"),
        helper.make_node("LayerNormalization", ["r1", "ln_s", "ln_b"], ["h2"], name="ln2", axis=-1),
        helper.make_node("MatMul", ["h2", "w1"], ["m1"], name="fc1"),
        helper.make_node("Add", ["m1", "b1"], ["m1b"], name="fc1_bias"),
        helper.make_node("Mul", ["m1b", "rsqrt2"], ["ge0"], name="gelu_scale"),
        helper.make_node("Erf", ["ge0"], ["ge1"], name="gelu_erf"),
        helper.make_node("Add", ["ge1", "one"], ["ge2"], name="gelu_add"),
        helper.make_node("Mul", ["m1b", "ge2"], ["ge3"], name="gelu_mul"),
        helper.make_node("Mul", ["ge3", "half"], ["gelu"], name="gelu_half"),
        helper.make_node("MatMul", ["gelu", "w2"], ["m2"], name="fc2"),
        helper.make_node("Add", ["r1", "m2"], ["y"], name="residual2"),
    ]
    return _model(
        nodes,
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", t, d]), helper.make_tensor_value_info("mask", TensorProto.FLOAT, ["N", 1, t])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", t, d])],
        inits,
    )


def conv_transpose(seed: int = 0) -> onnx.ModelProto:
    rng = np.random.default_rng(seed)
    inits = {"w": _f((4, 6, 2, 2), rng), "b": _f((6,), rng, 0.1), "g": _f((6, 3), rng)}
    nodes = [
        helper.make_node("ConvTranspose", ["x", "w", "b"], ["y"], name="deconv", strides=[2, 2]),
        helper.make_node("ReduceMean", ["y"], ["m"], name="mean", axes=[2, 3], keepdims=0),
        helper.make_node("Gemm", ["m", "g"], ["z"], name="gemm_nt"),
    ]
    return _model(
        nodes,
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 4, 5, 5])],
        [helper.make_tensor_value_info("z", TensorProto.FLOAT, ["N", 3])],
        inits,
    )


def conv_mean_head(seed: int = 0, opset: int = 18) -> onnx.ModelProto:
    """Conv -> Relu -> ReduceMean over H, W (axes as an input, keepdims 0) -> Gemm: a classifier head."""
    rng = np.random.default_rng(seed)
    inits = {"w": _f((16, 8, 3, 3), rng), "b": _f((16,), rng, 0.1), "axes": np.array([2, 3], np.int64), "fc": _f((10, 16), rng)}
    nodes = [
        helper.make_node("Conv", ["x", "w", "b"], ["c"], name="conv", pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c"], ["r"], name="relu"),
        helper.make_node("ReduceMean", ["r", "axes"], ["m"], name="mean", keepdims=0),
        helper.make_node("Gemm", ["m", "fc"], ["z"], name="fc", transB=1),
    ]
    return _model(
        nodes,
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 8, 7, 7])],
        [helper.make_tensor_value_info("z", TensorProto.FLOAT, ["N", 10])],
        inits,
        opset,
    )


def feeds(model: onnx.ModelProto, n: int = 3, batch: int = 4, seed: int = 1) -> list[dict[str, np.ndarray]]:
    """Random feeds for the graphs above (mask inputs are 0/1 with the last positions masked)."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        feed = {}
        for vi in model.graph.input:
            dims = [d.dim_value if d.dim_value else batch for d in vi.type.tensor_type.shape.dim]
            if vi.name == "mask":
                m = np.ones(dims, np.float32)
                m[..., -2:] = 0
                feed[vi.name] = m
            else:
                feed[vi.name] = rng.standard_normal(dims).astype(np.float32)
        out.append(feed)
    return out
