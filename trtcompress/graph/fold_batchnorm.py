"""Fold an inference BatchNormalization into the Conv, ConvTranspose or Gemm that feeds it.

y = (x - mean) / sqrt(var + eps) * scale + B is a per-output-channel affine map, so it moves into
the producer's weights and bias: W' = W * s (s = scale / sqrt(var + eps), on the output-channel
axis), b' = (b - mean) * s + B. Needs constant weights and statistics, and the producer's output
read by the BatchNormalization alone. The folded weights are new initializers (the old ones may
be shared); dead-code removal drops the old ones.
"""
from __future__ import annotations

import numpy as np
import onnx_ir as ir

from ._util import add_initializer, bypass, const_array, int_attr, single_use

__all__ = ["FoldBatchNormPass"]


class FoldBatchNormPass(ir.passes.InPlacePass):
    """``self.folded`` maps the producer's op type to how many BatchNormalizations it absorbed."""

    def __init__(self) -> None:
        super().__init__()
        self.folded: dict[str, int] = {}

    def call(self, model: ir.Model) -> ir.passes.PassResult:
        self.folded = {}
        graph = model.graph
        for bn in list(graph):
            if bn.op_type != "BatchNormalization" or bn.domain not in ("", "ai.onnx") or int_attr(bn, "training_mode", 0):
                continue
            if any(o.uses() or o.is_graph_output() for o in bn.outputs[1:]):
                continue
            x = bn.inputs[0]
            producer = x.producer()
            if producer is None or producer.op_type not in _FOLDERS or not single_use(x):
                continue
            stats = [const_array(v) for v in bn.inputs[1:5]]
            if any(s is None for s in stats):
                continue
            scale, shift, mean, var = (s.astype(np.float64) for s in stats)
            eps = bn.attributes["epsilon"].as_float() if "epsilon" in bn.attributes else 1e-5
            s = scale / np.sqrt(var + eps)
            folded = _FOLDERS[producer.op_type](producer, s, shift - mean * s)
            if folded is None:
                continue
            weight, bias = folded
            w = add_initializer(graph, weight, f"{producer.inputs[1].name}_bn")
            b = add_initializer(graph, bias, f"{producer.name or producer.outputs[0].name}_bn_bias")
            producer.replace_input_with(1, w)
            if len(producer.inputs) > 2:
                producer.replace_input_with(2, b)
            else:
                producer.resize_inputs(3)
                producer.replace_input_with(2, b)
            bypass(graph, bn, x)  # x is read by the BatchNormalization alone: this cannot refuse
            self.folded[producer.op_type] = self.folded.get(producer.op_type, 0) + 1
        return ir.passes.PassResult(model, modified=bool(self.folded))


def _bias(node: ir.Node, channels: int) -> np.ndarray | None:
    if len(node.inputs) < 3 or node.inputs[2] is None:
        return np.zeros(channels)
    b = const_array(node.inputs[2])
    return None if b is None else b.astype(np.float64).reshape(-1) * np.ones(channels)


def _conv(node: ir.Node, s: np.ndarray, t: np.ndarray):
    w = const_array(node.inputs[1])
    if w is None or w.shape[0] != len(s):
        return None
    b = _bias(node, len(s))
    if b is None:
        return None
    dt = w.dtype
    return (w * s.reshape(-1, *[1] * (w.ndim - 1))).astype(dt), (b * s + t).astype(dt)


def _conv_transpose(node: ir.Node, s: np.ndarray, t: np.ndarray):
    w = const_array(node.inputs[1])  # [C_in, C_out / group, k...]
    group = int_attr(node, "group", 1)
    if w is None or w.shape[1] * group != len(s):
        return None
    b = _bias(node, len(s))
    if b is None:
        return None
    dt = w.dtype
    g = w.reshape(group, w.shape[0] // group, w.shape[1], *w.shape[2:])
    g = g * s.reshape(group, 1, w.shape[1], *[1] * (w.ndim - 2))
    return g.reshape(w.shape).astype(dt), (b * s + t).astype(dt)


def _gemm(node: ir.Node, s: np.ndarray, t: np.ndarray):
    if int_attr(node, "transA", 0) not in (0, 1):
        return None
    w = const_array(node.inputs[1])
    if w is None or w.ndim != 2:
        return None
    trans_b = int_attr(node, "transB", 0)
    if (w.shape[0] if trans_b else w.shape[1]) != len(s):
        return None
    alpha = node.attributes["alpha"].as_float() if "alpha" in node.attributes else 1.0
    beta = node.attributes["beta"].as_float() if "beta" in node.attributes else 1.0
    c = _bias(node, len(s)) if len(node.inputs) < 3 or node.inputs[2] is None or const_array(node.inputs[2]).size in (1, len(s)) else None
    if c is None:
        return None
    dt = w.dtype
    scaled = w * (s[:, None] if trans_b else s[None, :]) * alpha
    node.attributes["alpha"] = ir.AttrFloat32("alpha", 1.0)
    node.attributes["beta"] = ir.AttrFloat32("beta", 1.0)
    return scaled.astype(dt), (beta * c * s + t).astype(dt)


_FOLDERS = {"Conv": _conv, "ConvTranspose": _conv_transpose, "Gemm": _gemm}
