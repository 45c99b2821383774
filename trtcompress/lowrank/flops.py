"""Multiply-accumulate counts of the matrix ops of an ONNX model, per sample.

Counters are registered by op type and read the shapes ONNX shape inference gives the node's values
(onnx-ir). A dynamic dimension (the batch) counts as 1, so the numbers are per sample for a model
with a dynamic batch. FLOPs are reported as 2 x MACs.

onnx-ir is imported by the functions that use it (``import trtcompress`` stays without it).
"""
from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING, Callable, Iterator

import numpy as np

if TYPE_CHECKING:
    import onnx
    import onnx_ir as ir

__all__ = ["node_macs", "model_macs", "register_counter", "dims", "inferred_shapes"]

Counter = Callable[["ir.Node"], "int | None"]
_COUNTERS: dict[str, Counter] = {}


def register_counter(op_type: str):
    def deco(fn: Counter) -> Counter:
        _COUNTERS[op_type] = fn
        return fn

    return deco


def dims(value: ir.Value | None) -> list[int | None] | None:
    """The value's shape, a dynamic or unknown dimension as None; None when the rank is unknown."""
    if value is None or value.shape is None:
        return None
    return [d if isinstance(d, int) and d > 0 else None for d in value.shape]


@contextlib.contextmanager
def inferred_shapes(model: ir.Model) -> Iterator[ir.Model]:
    """Annotate every value of ``model`` (bodies of If/Loop/Scan included) with ONNX shape
    inference while the block runs, then put back the annotations it came with: the counts need
    the shapes, the factorised model ships without the extra value_info. Inference that fails
    leaves the model's own annotations (the rules work without shapes)."""
    from onnx_ir.passes.common import ShapeInferencePass

    from ..graph._util import walk_graphs

    saved = {}
    for graph, _ in walk_graphs(model.graph):
        for v in [*graph.inputs, *graph.initializers.values(), *(o for n in graph for o in n.outputs)]:
            saved[v] = (v.type, v.shape)
    order = list(model.graph.initializers.values())
    # as model_io.infer_shapes: data propagation on, type checks off (a typing quirk of one node
    # must not cost every count); large weights are left out of the inferred copy by onnx-ir
    ShapeInferencePass(check_type=False, strict_mode=False, data_prop=True)(model)
    if list(model.graph.initializers.values()) != order:  # the pass re-registers the large ones last
        model.graph.initializers.clear()
        for v in order:
            model.graph.register_initializer(v)
    try:
        yield model
    finally:
        for v, (type_, shape) in saved.items():
            v.type, v.shape = type_, shape


def _prod(d) -> int:
    return int(np.prod([x if x else 1 for x in d], dtype=np.int64))


@register_counter("Conv")
def _conv(node: ir.Node) -> int | None:
    w, y = dims(node.inputs[1]), dims(node.outputs[0])
    if w is None or y is None or None in w:
        return None
    # each output element sums over C/group x kernel inputs
    return _prod(y[1:]) * _prod(w[1:])


@register_counter("ConvTranspose")
def _conv_t(node: ir.Node) -> int | None:
    w, x = dims(node.inputs[1]), dims(node.inputs[0])
    if w is None or x is None or None in w:
        return None
    # each input element feeds C_out/group x kernel outputs
    return _prod(x[1:]) * _prod(w[1:])


@register_counter("MatMul")
def _matmul(node: ir.Node) -> int | None:
    a, b, y = dims(node.inputs[0]), dims(node.inputs[1]), dims(node.outputs[0])
    if a is None or b is None or y is None or not a:
        return None
    return _prod(y) * (a[-1] or 1)


@register_counter("Gemm")
def _gemm(node: ir.Node) -> int | None:
    from ..graph._util import int_attr

    a, y = dims(node.inputs[0]), dims(node.outputs[0])
    if a is None or y is None:
        return None
    k = a[0] if int_attr(node, "transA", 0) else a[1]
    return _prod(y) * (k or 1)


def node_macs(node: ir.Node) -> int | None:
    """MACs of one node from its values' shapes (None: not a matrix op, or shapes unknown)."""
    fn = _COUNTERS.get(node.op_type)
    return fn(node) if fn else None


def model_macs(model: ir.Model | onnx.ModelProto, infer: bool = True) -> dict[str, int]:
    """MACs per matrix-op node (name -> MACs), the bodies of If/Loop/Scan included; nodes whose
    shapes are unknown are left out. ``infer=False``: use the shapes ``model`` carries (inside
    :func:`inferred_shapes`)."""
    import onnx_ir as ir

    from ..graph._util import walk_graphs

    if not isinstance(model, ir.Model):
        model = ir.from_proto(model)
    if infer:
        with inferred_shapes(model):
            return model_macs(model, infer=False)
    out = {}
    for i, node in enumerate(n for g, _ in walk_graphs(model.graph) for n in g):
        n = node_macs(node)
        if n is not None:
            out[node.name or f"{node.op_type}_{i}"] = n
    return out
