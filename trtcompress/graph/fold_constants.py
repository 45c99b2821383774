"""Constant folding, shape arithmetic on static dimensions included.

A node whose inputs are all constants is evaluated once with ONNX's reference evaluator, at the
model's opset, and replaced by initializers. ``Shape``/``Size`` of a tensor whose (selected)
dimensions are all static become constants too, so shape arithmetic that depends only on static
dimensions folds (the TorchScript exporter's per-Conv "same" Pad subgraphs), while anything that
reads a dynamic dimension (the batch) stays.

Not folded: Q/DQ nodes (TensorRT needs DequantizeLinear on the weights), random generators,
control flow, other domains, and nodes whose result would be much larger than their inputs
(ConstantOfShape/Expand/Tile would bloat the file).
"""
from __future__ import annotations

import logging

import numpy as np
import onnx
import onnx_ir as ir
from onnx.reference import ReferenceEvaluator

from ._util import const_array, const_size, const_tensor, int_attr, replace_with_constant

__all__ = ["FoldConstantsPass"]

log = logging.getLogger(__name__)

_NEVER = frozenset({
    "QuantizeLinear", "DequantizeLinear", "DynamicQuantizeLinear",
    "RandomNormal", "RandomUniform", "RandomNormalLike", "RandomUniformLike", "Multinomial", "Bernoulli",
    "If", "Loop", "Scan", "SequenceConstruct", "Optional",
})
_GROWTH_LIMIT = 1 << 16  # a folded output may exceed its inputs' size up to this many elements


class FoldConstantsPass(ir.passes.InPlacePass):
    """Replace constant subexpressions by initializers. ``self.folded``/``self.shapes`` count them."""

    def __init__(self) -> None:
        super().__init__()
        self.folded = 0
        self.shapes = 0

    def requires(self, model: ir.Model) -> None:
        if model.graph.opset_imports.get("", None) is None:
            raise ir.passes.PreconditionError("the model imports no default ONNX opset")

    def call(self, model: ir.Model) -> ir.passes.PassResult:
        self.folded = self.shapes = 0
        graph = model.graph
        opset = graph.opset_imports[""]
        for node in list(graph):
            if node.domain not in ("", "ai.onnx"):
                continue
            if node.op_type == "Constant":
                tensor = const_tensor(node.outputs[0])
                if tensor is not None and not node.outputs[0].is_graph_output():
                    replace_with_constant(graph, node, [tensor.numpy()])
                    self.folded += 1
                continue
            if node.op_type in ("Shape", "Size"):
                arr = _static_shape(node)
                if arr is not None and not node.outputs[0].is_graph_output():
                    replace_with_constant(graph, node, [arr])
                    self.shapes += 1
                continue
            if node.op_type in ("Gather", "Slice") and not node.outputs[0].is_graph_output():
                arr = _static_part_of_shape(node)
                if arr is not None:
                    replace_with_constant(graph, node, [arr])
                    self.shapes += 1
                    continue
            if node.op_type in _NEVER or any(a.type in (ir.AttributeType.GRAPH, ir.AttributeType.GRAPHS) for a in node.attributes.values()):
                continue
            if any(o.is_graph_output() or not o.name for o in node.outputs):
                continue
            sizes = [const_size(v) for v in node.inputs if v is not None]
            if not node.inputs or any(s is None for s in sizes):
                continue
            outputs = _evaluate(node, opset)
            if outputs is None or sum(o.size for o in outputs) > max(_GROWTH_LIMIT, sum(sizes)):
                continue
            replace_with_constant(graph, node, outputs)
            self.folded += 1
        return ir.passes.PassResult(model, modified=bool(self.folded or self.shapes))


def _static_shape(node: ir.Node) -> np.ndarray | None:
    shape = node.inputs[0].shape if node.inputs and node.inputs[0] is not None else None
    if shape is None:
        return None
    dims = list(shape.dims)
    if node.op_type == "Size":
        return np.array(int(np.prod(dims)), dtype=np.int64) if all(isinstance(d, int) for d in dims) else None
    start, end = int_attr(node, "start", 0), node.attributes.get("end")
    dims = dims[start:end.as_int()] if end is not None else dims[start:]
    if not all(isinstance(d, int) for d in dims):
        return None
    return np.array(dims, dtype=np.int64)


def _static_part_of_shape(node: ir.Node) -> np.ndarray | None:
    """Gather or Slice of a dynamic tensor's Shape that picks only static dims (H, W of a
    dynamic-batch image), or None."""
    src = node.inputs[0]
    shape_node = src.producer() if src is not None else None
    if shape_node is None or shape_node.op_type != "Shape" or not shape_node.inputs or shape_node.inputs[0].shape is None:
        return None
    dims = list(shape_node.inputs[0].shape.dims)
    end = shape_node.attributes.get("end")
    dims = dims[int_attr(shape_node, "start", 0):end.as_int() if end is not None else None]
    picked = np.array([d if isinstance(d, int) else -1 for d in dims], dtype=np.int64)
    index = np.arange(len(dims))
    if node.op_type == "Gather":
        idx = const_array(node.inputs[1])
        if idx is None or int_attr(node, "axis", 0) != 0:
            return None
        sel = index[idx.astype(np.int64)]
    else:
        if len(node.inputs) < 3:
            return None
        args = [const_array(v) if v is not None else None for v in node.inputs[1:5]] + [None] * (5 - len(node.inputs))
        starts, ends, axes, steps = args
        if starts is None or ends is None or (axes is not None and list(axes) not in ([0], [-1])) or (len(node.inputs) > 3 and node.inputs[3] is not None and axes is None) or (len(node.inputs) > 4 and node.inputs[4] is not None and steps is None):
            return None
        step = int(steps[0]) if steps is not None else 1
        sel = index[slice(*[max(min(int(v), 2**62), -2**62) for v in (starts[0], ends[0])], step)]
    if np.any(picked[sel] < 0):
        return None
    return picked[sel]


def _evaluate(node: ir.Node, opset: int) -> list[np.ndarray] | None:
    """Run one node with the reference evaluator; None when it cannot (unsupported op, bad data)."""
    feeds = {}
    names = []
    for i, v in enumerate(node.inputs):
        if v is None:
            names.append("")
            continue
        names.append(f"in{i}")
        feeds[f"in{i}"] = const_array(v)
    outs = [f"out{i}" for i in range(len(node.outputs))]
    proto = ir.serde.serialize_node(node)
    del proto.input[:], proto.output[:]
    proto.input.extend(names)
    proto.output.extend(outs)
    graph = onnx.helper.make_graph([proto], "fold", [onnx.helper.make_tensor_value_info(n, onnx.helper.np_dtype_to_tensor_dtype(a.dtype), a.shape) for n, a in feeds.items()],
                                   [onnx.helper.make_empty_tensor_value_info(o) for o in outs])
    model = onnx.helper.make_model(graph, opset_imports=[onnx.helper.make_opsetid("", opset)])
    try:
        results = ReferenceEvaluator(model).run(None, feeds)
    except Exception as e:  # an op the evaluator lacks or data it refuses: leave the node
        log.debug("not folding %s (%s): %s", node.name, node.op_type, e)
        return None
    results = [np.asarray(r) for r in results]
    if any(r.dtype == object for r in results):
        return None
    return results
