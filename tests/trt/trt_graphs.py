"""Small ONNX models built in code for the TensorRT tests (random weights: structure only)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from trtcompress.sparsity.masks import prune_2to4


def conv_net(path: Path | None = None, c: int = 32, dynamic: bool = True, sparse: bool = False, qdq: bool = False, seed: int = 0, opset: int = 17) -> onnx.ModelProto:
    """x[N,3,16,16] -> Conv 3->c -> Relu -> [Q/DQ] Conv c->c (2:4 when ``sparse``) -> Relu -> GAP -> Flatten -> Gemm -> logits[N,10]."""
    rng = np.random.default_rng(seed)
    w1 = (rng.standard_normal((c, 3, 3, 3)) * 0.3).astype(np.float32)
    w2 = (rng.standard_normal((c, c, 3, 3)) * 0.1).astype(np.float32)
    if sparse:
        w2, _ = prune_2to4(w2, 1)
    fc = (rng.standard_normal((10, c)) * 0.3).astype(np.float32)
    inits = {"w1": w1, "b1": np.zeros(c, np.float32), "fc": fc, "fb": np.zeros(10, np.float32)}
    nodes = [
        helper.make_node("Conv", ["x", "w1", "b1"], ["c1"], name="conv1", pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c1"], ["r1"], name="relu1"),
    ]
    conv2_in, conv2_w = "r1", "w2"
    if qdq:
        ws = (np.abs(w2).reshape(c, -1).max(1) / 127).astype(np.float32)
        inits.update({
            "w2_q": np.clip(np.round(w2 / ws[:, None, None, None]), -127, 127).astype(np.int8), "w2_s": ws, "w2_z": np.zeros(c, np.int8),
            "a_s": np.float32(0.05), "a_z": np.int8(0),
        })
        nodes += [
            helper.make_node("QuantizeLinear", ["r1", "a_s", "a_z"], ["r1_q"], name="q_r1"),
            helper.make_node("DequantizeLinear", ["r1_q", "a_s", "a_z"], ["r1_dq"], name="dq_r1"),
            helper.make_node("DequantizeLinear", ["w2_q", "w2_s", "w2_z"], ["w2_dq"], name="dq_w2", axis=0),
        ]
        conv2_in, conv2_w = "r1_dq", "w2_dq"
    else:
        inits["w2"] = w2
    nodes += [
        helper.make_node("Conv", [conv2_in, conv2_w], ["c2"], name="conv2", pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c2"], ["r2"], name="relu2"),
        helper.make_node("GlobalAveragePool", ["r2"], ["g"], name="gap"),
        helper.make_node("Flatten", ["g"], ["f"], name="flatten"),
        helper.make_node("Gemm", ["f", "fc", "fb"], ["logits"], name="fc", transB=1),
    ]
    batch = "N" if dynamic else 1
    graph = helper.make_graph(
        nodes, "conv_net",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [batch, 3, 16, 16])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [batch, 10])],
        [numpy_helper.from_array(np.asarray(v), k) for k, v in inits.items()],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    if path is not None:
        onnx.save(model, path)
    return model


def seq_model(path: Path) -> Path:
    """ids-like float input with a dynamic batch AND a dynamic length: x[N,T,16] -> MatMul."""
    w = np.random.default_rng(0).standard_normal((16, 8)).astype(np.float32)
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["y"])], "seq",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", "T", 16])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", "T", 8])],
        [numpy_helper.from_array(w, "w")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, path)
    return path
