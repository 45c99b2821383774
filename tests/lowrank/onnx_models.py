"""Small ONNX models built in code for the low-rank tests."""
from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper


def low_rank(shape, rank, rng):
    """A weight of the given shape whose out x in matrix has exactly ``rank``."""
    out_dim, in_dim = shape[0], int(np.prod(shape[1:]))
    m = rng.standard_normal((out_dim, rank)) @ rng.standard_normal((rank, in_dim)) / np.sqrt(in_dim)
    return m.reshape(shape).astype(np.float32)


def cnn(rng, rank: int | None = None, gemm_trans_b: int = 1) -> onnx.ModelProto:
    """Conv(pads) -> Relu -> Conv(stride 2) -> depthwise Conv -> Flatten -> MatMul -> Gemm."""
    w = (lambda s: low_rank(s, rank, rng)) if rank else (lambda s: (rng.standard_normal(s) / np.sqrt(np.prod(s[1:]))).astype(np.float32))
    W1, b1 = w((16, 3, 3, 3)), rng.standard_normal(16).astype(np.float32)
    W2, b2 = w((32, 16, 3, 3)), rng.standard_normal(32).astype(np.float32)
    Wd = rng.standard_normal((32, 1, 3, 3)).astype(np.float32)
    Wm = w((64, 32 * 4 * 4)).T.copy()  # MatMul weight K x N
    Wg = w((10, 64))
    if not gemm_trans_b:
        Wg = Wg.T.copy()
    bg = rng.standard_normal(10).astype(np.float32)
    nodes = [
        helper.make_node("Conv", ["x", "W1", "b1"], ["c1"], name="conv1", pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c1"], ["r1"], name="relu1"),
        helper.make_node("Conv", ["r1", "W2", "b2"], ["c2"], name="conv2", strides=[2, 2], pads=[1, 1, 1, 1], dilations=[1, 1]),
        helper.make_node("Conv", ["c2", "Wd"], ["c3"], name="dw", group=32, pads=[1, 1, 1, 1]),
        helper.make_node("Flatten", ["c3"], ["f"], name="flat"),
        helper.make_node("MatMul", ["f", "Wm"], ["m"], name="mm"),
        helper.make_node("Gemm", ["m", "Wg", "bg"], ["y"], name="fc", transB=gemm_trans_b, alpha=1.0, beta=1.0),
    ]
    inits = [numpy_helper.from_array(a, n) for n, a in dict(W1=W1, b1=b1, W2=W2, b2=b2, Wd=Wd, Wm=Wm, Wg=Wg, bg=bg).items()]
    g = helper.make_graph(nodes, "cnn", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, 8, 8])], [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 10])], inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    onnx.checker.check_model(m)
    return m


def run(model: onnx.ModelProto, x: np.ndarray) -> np.ndarray:
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    return ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
