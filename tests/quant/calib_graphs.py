"""Tiny real ONNX models and batches for the calibration tests (random weights: structure only)."""
from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper


def conv_relu_mlp(batch: int | str = "N", seed: int = 0) -> onnx.ModelProto:
    """x[N,3,8,8] -> Conv -> Relu -> Conv -> Clip(0,6) -> Flatten -> MatMul -> Add -> y[N,10]."""
    rng = np.random.default_rng(seed)
    w1 = rng.standard_normal((8, 3, 3, 3)).astype(np.float32) * 0.5
    w2 = rng.standard_normal((4, 8, 3, 3)).astype(np.float32) * 0.3
    w3 = rng.standard_normal((4 * 8 * 8, 10)).astype(np.float32) * 0.1
    b3 = rng.standard_normal(10).astype(np.float32)
    nodes = [
        helper.make_node("Conv", ["x", "w1"], ["c1"], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c1"], ["r1"]),
        helper.make_node("Conv", ["r1", "w2"], ["c2"], pads=[1, 1, 1, 1]),
        helper.make_node("Clip", ["c2", "lo", "hi"], ["r2"]),
        helper.make_node("Flatten", ["r2"], ["f"]),
        helper.make_node("MatMul", ["f", "w3"], ["mm"]),
        helper.make_node("Add", ["mm", "b3"], ["y"]),
    ]
    inits = [
        numpy_helper.from_array(w1, "w1"),
        numpy_helper.from_array(w2, "w2"),
        numpy_helper.from_array(w3, "w3"),
        numpy_helper.from_array(b3, "b3"),
        numpy_helper.from_array(np.array(0, np.float32), "lo"),
        numpy_helper.from_array(np.array(6, np.float32), "hi"),
    ]
    graph = helper.make_graph(
        nodes,
        "conv_relu_mlp",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [batch, 3, 8, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [batch, 10])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


TENSORS = ["x", "r1", "r2", "f", "mm"]


def batches(x: np.ndarray, bs: int) -> list[dict[str, np.ndarray]]:
    return [{"x": x[i : i + bs]} for i in range(0, len(x), bs)]
