"""What placement, the TensorRT form and the debugger ask of an onnx-ir graph.

onnx-ir is imported inside the functions: the CLI imports these modules, and ``import
trtcompress`` stays light. The graph's own use-def chains answer the questions; :class:`View`
only adds what they do not hold: nodes by name (plans name nodes), and the main-graph node that
holds an If/Loop/Scan body reading a tensor (for placement, that node is the reader).
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import onnx

if TYPE_CHECKING:
    import onnx_ir as ir

__all__ = ["View", "as_ir", "to_proto", "const_value", "const_tensor", "const_shape", "is_const", "is_float", "shape_of", "attr", "name_main_nodes", "add_tensor", "add_node", "drop_unused_initializers"]


def as_ir(model: "onnx.ModelProto | ir.Model") -> "ir.Model":
    """``model`` in onnx-ir (tensors are wrapped, not copied); an ir model as it is."""
    import onnx_ir as ir

    return model if isinstance(model, ir.Model) else ir.from_proto(model)


def to_proto(model: "ir.Model", like: onnx.ModelProto | None = None) -> onnx.ModelProto:
    """``model`` as a ModelProto. With ``like`` (the proto it came from), written as the protobuf
    writers wrote it: ``like``'s opset imports (onnx-ir spells the default domain out) and only
    the shape annotations ``like`` had, in its order (onnx-ir adds one per typed tensor)."""
    import onnx_ir as ir

    out = ir.to_proto(model)
    if like is None:
        return out
    if {(o.domain, o.version) for o in out.opset_import} == {(o.domain, o.version) for o in like.opset_import}:
        del out.opset_import[:]
        out.opset_import.extend(like.opset_import)
    written = {vi.name: vi for vi in out.graph.value_info}
    kept = [written[vi.name] for vi in like.graph.value_info if vi.name in written]
    del out.graph.value_info[:]
    out.graph.value_info.extend(kept)
    return out


def name_main_nodes(model: "ir.Model", proto: onnx.ModelProto | None) -> None:
    """Name every node of ``model`` (``name_nodes``) and give ``proto``'s main-graph nodes, in the
    same order, the same names (calibration and the CPU form look nodes up by name)."""
    from ..graph._util import name_nodes

    name_nodes(model.graph)
    if proto is not None:
        for node, named in zip(proto.graph.node, model.graph):
            node.name = named.name


def const_value(value: "ir.Value | None") -> np.ndarray | None:
    """The constant content of ``value`` (an initializer that is not a graph input, or a
    Constant's output), weights held by :func:`~trtcompress.weightless.held_weights` included."""
    from ..graph._util import const_array

    return const_array(value)


def const_tensor(value: "ir.Value | None") -> "ir.TensorProtocol | None":
    """The constant's tensor, unread (dtype and shape come from its header); None when not constant."""
    from ..graph import _util

    return _util.const_tensor(value)


def const_shape(value: "ir.Value | None") -> tuple[int, ...] | None:
    """The shape of a constant, from its tensor's header (nothing is loaded); None when not constant."""
    tensor = const_tensor(value)
    return None if tensor is None else tuple(tensor.shape.numpy())


def is_const(value: "ir.Value | None") -> bool:
    """An initializer that is not a graph input, or the output of a Constant node (read nothing)."""
    if value is None:
        return False
    if value.is_initializer():
        return not value.is_graph_input()
    p = value.producer()
    return p is not None and p.op_type == "Constant"


def is_float(value: "ir.Value") -> bool:
    """float32, or of unknown type."""
    import onnx_ir as ir

    return value.dtype in (None, ir.DataType.FLOAT)


def shape_of(value: "ir.Value | None") -> tuple[int | None, ...] | None:
    """The static shape (None for a symbolic or unknown dimension), None when unknown."""
    if value is None or value.shape is None:
        return None
    return tuple(d if isinstance(d, int) else None for d in value.shape)


def attr(node: "ir.Node", name: str, default: Any = None) -> Any:
    """An attribute's Python value (str for strings, list for lists), or ``default``."""
    a = node.attributes.get(name)
    if a is None:
        return default
    value = a.value
    return list(value) if isinstance(value, tuple) else value


def add_tensor(graph: "ir.Graph", array: np.ndarray, name: str) -> "ir.Value":
    """Register ``array`` as the initializer ``name`` (the name is kept: onnx-ir refuses a taken one)."""
    import onnx_ir as ir

    array = np.asarray(array)
    # ir.Tensor, not ir.tensor: the latter's runtime protocol checks cost 2 ms a call (a third of
    # the TensorRT form's time on EfficientNet-Lite0)
    value = ir.Value(name=name, shape=ir.Shape(array.shape), type=ir.TensorType(ir.DataType.from_numpy(array.dtype)),
                     const_value=ir.Tensor(array, name=name))
    graph.register_initializer(value)
    return value


def add_node(graph_anchor: "tuple[str, ir.Node]", op_type: str, inputs: list, output: str, name: str, **attributes: Any) -> "ir.Node":
    """A default-domain node ``name`` writing one new tensor ``output``, inserted ``before`` or
    ``after`` the anchor node."""
    import onnx_ir as ir

    where, anchor = graph_anchor
    node = ir.node(op_type, inputs, attributes or None, outputs=[ir.Value(name=output)], name=name)
    (anchor.graph.insert_before if where == "before" else anchor.graph.insert_after)(anchor, node)
    return node


def drop_unused_initializers(graph: "ir.Graph") -> None:
    """Remove the initializers nobody reads (a body of an If/Loop/Scan reading one counts); one
    that is also a graph input stays, as the model's signature."""
    for name, value in list(graph.initializers.items()):
        if not value.uses() and not value.is_graph_output() and not value.is_graph_input():
            graph.initializers.pop(name)


class View:
    """The main graph of ``model``: nodes in order and by name, tensors by name, and who reads what."""

    def __init__(self, model: "ir.Model") -> None:
        import onnx_ir as ir

        self.model = model
        self.graph = model.graph
        self.nodes: list[ir.Node] = list(self.graph)
        self.by_name = {n.name: n for n in self.nodes}
        self.values: dict[str, ir.Value] = {v.name: v for v in self.graph.inputs}
        self.values.update(self.graph.initializers)
        self._owner: dict[ir.Node, ir.Node] = {}  # a node inside a body -> the main-graph node holding it
        for n in self.nodes:
            self.values.update((o.name, o) for o in n.outputs if o.name)
            for a in n.attributes.values():
                if a.type == ir.AttributeType.GRAPH:
                    bodies = [a.as_graph()]
                elif a.type == ir.AttributeType.GRAPHS:
                    bodies = list(a.as_graphs())
                else:
                    continue
                for body in bodies:
                    self._owner.update((inner, n) for inner in ir.traversal.RecursiveGraphIterator(body))

    def value(self, name: str) -> "ir.Value | None":
        return self.values.get(name) if name else None

    def consumers(self, value: "ir.Value") -> list["ir.Node"]:
        """Main-graph nodes reading ``value``: once per input slot, and once for a node whose
        If/Loop/Scan bodies read it."""
        out, owners = [], []
        for use in value.uses():
            if use.node.graph is self.graph:
                out.append(use.node)
            elif (owner := self._owner.get(use.node)) is not None and owner not in owners:
                owners.append(owner)
        return out + owners
