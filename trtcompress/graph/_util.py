"""Small onnx-ir helpers shared by the passes."""
from __future__ import annotations

import numpy as np
import onnx_ir as ir


def const_tensor(value: ir.Value | None) -> ir.TensorProtocol | None:
    """The constant tensor behind ``value`` (an initializer or a Constant node's output), or None.

    Unlike ``ir.convenience.get_const_tensor`` it never renames the tensor: for a Constant node
    read from a protobuf that rename writes through into the caller's model."""
    if value is None or value.is_graph_input():
        return None
    if value.const_value is not None:
        return value.const_value
    node = value.producer()
    if node is not None and node.op_type == "Constant" and node.domain == "" and "value" in node.attributes:
        attr = node.attributes["value"]
        return None if attr.is_ref() else attr.as_tensor()
    return ir.convenience.get_const_tensor(value)  # value_float(s)/value_int(s): a new tensor


def const_array(value: ir.Value | None) -> np.ndarray | None:
    """The value's constant content, or None when it is computed or can be overridden at run time.

    An initializer that is also a graph input can be fed by the user: it is not a constant.
    Reading the content loads it (external data included): call it only on tensors you fold.
    """
    tensor = const_tensor(value)
    return None if tensor is None else tensor_array(tensor)


def const_size(value: ir.Value | None) -> int | None:
    """Element count of a constant without loading it (None when not constant)."""
    tensor = const_tensor(value)
    return None if tensor is None else int(np.prod(tensor.shape.numpy()))


def add_initializer(graph: ir.Graph, array: np.ndarray, name: str) -> ir.Value:
    """Register ``array`` as a new initializer named after ``name`` (made unique)."""
    base, i = name, 0
    while name in graph.initializers:
        i += 1
        name = f"{base}_{i}"
    value = ir.Value(name=name, const_value=ir.tensor(np.array(array, order="C"), name=name))
    value.shape = ir.Shape(array.shape)
    value.type = ir.TensorType(ir.DataType.from_numpy(array.dtype))
    graph.register_initializer(value)
    return value


def replace_with_constant(graph: ir.Graph, node: ir.Node, arrays: list[np.ndarray]) -> None:
    """Replace ``node`` by initializers holding its outputs (keeping the output names)."""
    names = [o.name for o in node.outputs]
    news = []
    for out, arr in zip(node.outputs, arrays):
        new = ir.Value(const_value=ir.tensor(np.array(arr, order="C")))
        new.shape = ir.Shape(arr.shape)
        new.type = ir.TensorType(ir.DataType.from_numpy(arr.dtype))
        news.append(new)
    ir.convenience.replace_all_uses_with(list(node.outputs), news, replace_graph_outputs=True)
    graph.remove(node, safe=True)
    for name, new in zip(names, news):
        new.name = name
        new.const_value.name = name
        graph.register_initializer(new)


def bypass(graph: ir.Graph, node: ir.Node, source: ir.Value) -> bool:
    """Remove a node whose first output equals ``source``.

    When that output is a graph output, ``source`` takes its name, so the model's signature
    stays; that is impossible (False, nothing done) when ``source`` is a graph input, an
    initializer or already an output.
    """
    out = node.outputs[0]
    if any(o.uses() or o.is_graph_output() for o in node.outputs[1:]):
        return False
    if out.is_graph_output():
        if source.is_graph_input() or source.is_initializer() or source.is_graph_output():
            return False
        name = out.name
        ir.convenience.replace_all_uses_with(out, source, replace_graph_outputs=True)
        graph.remove(node, safe=True)
        source.name = name
        return True
    ir.convenience.replace_all_uses_with(out, source)
    graph.remove(node, safe=True)
    return True


def int_attr(node: ir.Node, name: str, default: int) -> int:
    attr = node.attributes.get(name)
    return default if attr is None else attr.as_int()


def ints_attr(node: ir.Node, name: str) -> list[int] | None:
    attr = node.attributes.get(name)
    return None if attr is None else list(attr.as_ints())


def single_use(value: ir.Value) -> bool:
    return len(value.uses()) == 1 and not value.is_graph_output()


def require_opset(model: ir.Model, minimum: int = 13) -> int:
    """The default-domain opset; per-axis Q/DQ needs 13 or newer."""
    from ..errors import ModelError

    version = model.opset_imports.get("", model.opset_imports.get("ai.onnx"))
    if version is None:
        raise ModelError("the model has no default-domain opset import; re-export it")
    if version < minimum:
        raise ModelError(
            f"the model uses opset {version}; per-channel Q/DQ needs opset {minimum} or newer: "
            f"convert it with onnx.version_converter or re-export with opset_version={minimum}"
        )
    return version


def name_nodes(graph: ir.Graph, prefix: str = "") -> None:
    """Give every unnamed node of ``graph`` a unique name, in place (include/exclude and reports
    need names): ``Op_i`` by position as before; nodes of If/Loop/Scan bodies get their owner's
    name and the attribute as a prefix, so the names are stable across runs."""
    seen: set[str] = set()
    for i, node in enumerate(graph):
        name = node.name or f"{prefix}{node.op_type}_{i}"
        while name in seen:
            name = f"{name}_{i}"
        node.name = name
        seen.add(name)
        for attr in node.attributes.values():
            if attr.type == ir.AttributeType.GRAPH:
                name_nodes(attr.as_graph(), f"{name}/{attr.name}/")
            elif attr.type == ir.AttributeType.GRAPHS:
                for k, sub in enumerate(attr.as_graphs()):
                    name_nodes(sub, f"{name}/{attr.name}[{k}]/")


def tensor_array(tensor: ir.TensorProtocol) -> np.ndarray:
    """A tensor's content; a weight held in memory beside the light copy of a large model
    (``weightless.held_weights``) is read from there, not from its placeholder's location."""
    if isinstance(tensor, ir.ExternalTensor):
        from ..weightless import _HELD_PREFIX
        from ..weightless import tensor_array as proto_array

        if tensor.location.startswith(_HELD_PREFIX):
            return proto_array(ir.serde.serialize_tensor(tensor))  # the placeholder only: no data is read
    return tensor.numpy()


def walk_graphs(graph: ir.Graph, scope: str = ""):
    """``graph`` and every If/Loop/Scan body nested in it, with a scope naming where (``""`` for
    ``graph``, ``If_0/then_branch`` for a branch of the node ``If_0``), in the order and with the
    scopes of :func:`trtcompress.subgraphs.walk` (reports and per-layer seeds depend on them)."""
    yield graph, scope
    for i, node in enumerate(graph):
        for attr in node.attributes.values():
            subs = [(attr.name, attr.as_graph())] if attr.type == ir.AttributeType.GRAPH else (
                [(f"{attr.name}[{k}]", g) for k, g in enumerate(attr.as_graphs())] if attr.type == ir.AttributeType.GRAPHS else [])
            for where, sub in subs:
                where = f"{node.name or node.op_type + '_' + str(i)}/{where}"
                yield from walk_graphs(sub, f"{scope}/{where}" if scope else where)
