"""Multiply-accumulate counts of the matrix ops of an ONNX model, per sample.

Counters are registered by op type. A dynamic dimension (the batch) counts as 1, so the numbers are
per sample for a model with a dynamic batch. FLOPs are reported as 2 x MACs.
"""
from __future__ import annotations

from typing import Callable

import numpy as np
import onnx

from ..subgraphs import walk
from .graph import GraphInfo, attrs

__all__ = ["node_macs", "model_macs", "register_counter"]

Counter = Callable[[onnx.NodeProto, GraphInfo], "int | None"]
_COUNTERS: dict[str, Counter] = {}


def register_counter(op_type: str):
    def deco(fn: Counter) -> Counter:
        _COUNTERS[op_type] = fn
        return fn

    return deco


def _prod(dims) -> int:
    return int(np.prod([d if d else 1 for d in dims], dtype=np.int64))


@register_counter("Conv")
def _conv(node: onnx.NodeProto, info: GraphInfo) -> int | None:
    w, y = info.shapes.get(node.input[1]), info.shapes.get(node.output[0])
    if w is None or y is None or None in w:
        return None
    # each output element sums over C/group x kernel inputs
    return _prod(y[1:]) * _prod(w[1:])


@register_counter("ConvTranspose")
def _conv_t(node: onnx.NodeProto, info: GraphInfo) -> int | None:
    w, x = info.shapes.get(node.input[1]), info.shapes.get(node.input[0])
    if w is None or x is None or None in w:
        return None
    # each input element feeds C_out/group x kernel outputs
    return _prod(x[1:]) * _prod(w[1:])


@register_counter("MatMul")
def _matmul(node: onnx.NodeProto, info: GraphInfo) -> int | None:
    a, b, y = info.shapes.get(node.input[0]), info.shapes.get(node.input[1]), info.shapes.get(node.output[0])
    if a is None or b is None or y is None or not a:
        return None
    return _prod(y) * (a[-1] or 1)


@register_counter("Gemm")
def _gemm(node: onnx.NodeProto, info: GraphInfo) -> int | None:
    a, y = info.shapes.get(node.input[0]), info.shapes.get(node.output[0])
    if a is None or y is None:
        return None
    k = a[0] if attrs(node).get("transA", 0) else a[1]
    return _prod(y) * (k or 1)


def node_macs(node: onnx.NodeProto, info: GraphInfo) -> int | None:
    fn = _COUNTERS.get(node.op_type)
    return fn(node, info) if fn else None


def model_macs(model: onnx.ModelProto, info: GraphInfo | None = None) -> dict[str, int]:
    """MACs per matrix-op node (name -> MACs); nodes whose shapes are unknown are left out."""
    info = info or GraphInfo.of(model)
    out = {}
    for i, node in enumerate(n for g, _ in walk(model.graph) for n in g.node):
        n = node_macs(node, info)
        if n is not None:
            out[node.name or f"{node.op_type}_{i}"] = n
    return out
