"""Read and rewrite the constants of an onnx-ir model, and find the stored values behind a weight input.

A weight reaches a compute node as a float initializer or Constant node, as int8 values through
DequantizeLinear (a Q/DQ model written for TensorRT), or as float values through a
QuantizeLinear -> DequantizeLinear pair. :func:`resolve_weight` returns one description for all three
so inspection and pruning treat them alike.

onnx-ir is imported inside the functions that build IR objects: the CLI imports this package to
list the prunable op types, and ``import trtcompress`` pulls in no onnx-ir.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import onnx
    import onnx_ir as ir

__all__ = ["Constants", "WeightSource", "attr", "graph_nodes", "layer_name", "load", "node_input", "resolve_weight", "save", "tensor_shapes"]


def load(model: onnx.ModelProto | ir.Model) -> ir.Model:
    """The stage's one conversion in: tensors stay the protobuf's, read only when asked for."""
    import onnx_ir as ir

    return model if isinstance(model, ir.Model) else ir.from_proto(model)


def save(model: ir.Model, like: onnx.ModelProto) -> onnx.ModelProto:
    """The conversion out. Pruning and permutation change no tensor's type or shape, so the shape
    annotations are ``like``'s (onnx-ir would write one for every typed value, initializers
    included, and the shipped file would grow)."""
    import onnx_ir as ir

    from ..subgraphs import walk

    out = ir.to_proto(model)
    for (graph, _), (source, _) in zip(walk(out.graph), walk(like.graph)):
        del graph.value_info[:]
        graph.value_info.extend(source.value_info)
    return out


def graph_nodes(graph: ir.Graph, scope: str = "") -> Iterator[tuple[ir.Node, str]]:
    """Every node of ``graph``, then those of each If/Loop/Scan body in it, with a scope naming where
    (``""`` for ``graph``, ``If_0/then_branch`` for a branch of the node ``If_0``)."""
    from ..graph._util import walk_graphs

    for sub, where in walk_graphs(graph, scope):
        for node in sub:
            yield node, where


def node_input(node: ir.Node, index: int) -> ir.Value | None:
    """Input ``index`` of ``node``; None when absent or omitted."""
    return node.inputs[index] if index < len(node.inputs) else None


def attr(node: ir.Node, name: str, default: Any) -> Any:
    a = node.attributes.get(name)
    return default if a is None else a.value


def layer_name(node: ir.Node) -> str:
    return node.name or node.outputs[0].name


def _is_const(value: ir.Value) -> bool:
    """Initializers a user cannot override (not also graph inputs) and Constant node outputs."""
    if value.is_graph_input():
        return False
    producer = value.producer()
    return value.is_initializer() or (producer is not None and producer.op_type == "Constant" and producer.domain == "")


def _read_const(value: ir.Value) -> np.ndarray | None:
    from ..graph._util import const_array  # imports onnx-ir: only when a stage runs

    return const_array(value) if _is_const(value) else None


class Constants:
    """The constant values of a model, each read once, with writes that leave other users alone."""

    def __init__(self, model: ir.Model) -> None:
        self.model = model
        self._cache: dict[ir.Value, np.ndarray] = {}
        self._names: set[str] | None = None

    def get(self, value: ir.Value | None) -> np.ndarray | None:
        """The value of an initializer (not a graph input) or Constant node output, else None."""
        if value is None:
            return None
        if value in self._cache:
            return self._cache[value]
        arr = _read_const(value)
        if arr is not None:
            self._cache[value] = arr
        return arr

    def set(self, value: ir.Value, array: np.ndarray) -> None:
        """Overwrite the values of an existing constant in place (same name)."""
        import onnx_ir as ir

        array = np.ascontiguousarray(array)
        if value.is_initializer():
            old = value.const_value
            value.const_value = ir.Tensor(array, name=value.name, doc_string=getattr(old, "doc_string", None))
        else:
            node = value.producer()
            assert node is not None and node.op_type == "Constant", value
            node.attributes.clear()
            node.attributes["value"] = ir.AttrTensor("value", ir.Tensor(array, name=value.name))
        self._cache[value] = array

    def set_input(self, node: ir.Node, index: int, array: np.ndarray, suffix: str = "sparse") -> ir.Value:
        """Give ``node``'s input ``index`` a new constant value without touching other users.

        The constant is rewritten in place when ``node`` is its only user; otherwise a copy with a
        new name becomes a main-graph initializer and only ``node`` reads it. Returns the value now used.
        """
        import onnx_ir as ir

        value = node.inputs[index]
        assert value is not None
        if len(value.uses()) == 1 and not value.is_graph_output() and _is_const(value):
            self.set(value, array)
            return value
        array = np.ascontiguousarray(array)
        name = self.unique_name(f"{value.name}_{suffix}")
        new = ir.Value(name=name, shape=ir.Shape(array.shape), type=ir.TensorType(ir.DataType.from_numpy(array.dtype)),
                       const_value=ir.Tensor(array, name=name))
        self.model.graph.register_initializer(new)
        node.replace_input_with(index, new)
        self._cache[new] = array
        return new

    def unique_name(self, base: str) -> str:
        if self._names is None:
            self._names = _all_names(self.model.graph)
        name, k = base, 1
        while name in self._names:
            name, k = f"{base}_{k}", k + 1
        self._names.add(name)
        return name


def _all_names(graph: ir.Graph) -> set[str]:
    names = {v.name for v in graph.inputs} | set(graph.initializers)
    for node, _ in graph_nodes(graph):
        names.update(o.name for o in node.outputs if o.name)
        for a in node.attributes.values():
            if a.type.name == "GRAPH":
                sub = a.as_graph()
                names |= {v.name for v in sub.inputs} | set(sub.initializers)
            elif a.type.name == "GRAPHS":
                for sub in a.as_graphs():
                    names |= {v.name for v in sub.inputs} | set(sub.initializers)
    names.discard(None)
    return names


@dataclasses.dataclass
class WeightSource:
    """Where the values of a weight input live.

    ``kind`` is ``"float"`` (a plain constant), ``"dq"`` (integer values dequantized by a
    DequantizeLinear: zero is the zero point) or ``"qdq"`` (a float constant quantized and
    dequantized in the graph) or ``"shared"`` (codebook values decoded by Gather from indices, as
    the ``share`` stage writes them: read-only, ``stored`` is the decoded value). ``stored`` is the
    constant that holds the values to rewrite.
    """

    kind: str
    stored: ir.Value
    values: np.ndarray
    scale: np.ndarray | None = None
    zero_point: np.ndarray | None = None
    axis: int = 1
    owner: ir.Node | None = None  # the node whose input ``stored`` is (for copy-on-write)
    owner_index: int = 0

    @property
    def name(self) -> str:
        return self.stored.name or ""

    @property
    def quantized(self) -> bool:
        return self.kind != "float"

    def _broadcast(self, p: np.ndarray) -> np.ndarray:
        if p.ndim == 0 or p.size == 1:
            return p.reshape(())
        shape = [1] * self.values.ndim
        shape[self.axis % self.values.ndim] = p.size
        return p.reshape(shape)

    def effective(self) -> np.ndarray:
        """The weight as the compute node sees it (float32)."""
        if self.kind in ("float", "shared"):
            return np.asarray(self.values, dtype=np.float32)
        scale = self._broadcast(np.asarray(self.scale, dtype=np.float32))
        zp = self._broadcast(np.asarray(self.zero_point if self.zero_point is not None else 0).astype(np.float32))
        if self.kind == "dq":
            q = self.values.astype(np.float32)
        else:  # qdq: quantize the float weights the way QuantizeLinear does (round half to even)
            qmin, qmax = _int_range(self.zero_point)
            q = np.clip(np.rint(self.values.astype(np.float32) / scale) + zp, qmin, qmax)
        return (q - zp) * scale

    def stored_zero(self) -> np.ndarray | int:
        """The stored value that means 0 (broadcastable to ``values``)."""
        if self.kind == "dq" and self.zero_point is not None:
            return self._broadcast(np.asarray(self.zero_point))
        return 0


def _int_range(zero_point: np.ndarray | None) -> tuple[int, int]:
    dtype = np.asarray(zero_point).dtype if zero_point is not None else np.dtype(np.uint8)
    if np.issubdtype(dtype, np.integer):
        info = np.iinfo(dtype)
        return int(info.min), int(info.max)
    return -128, 127


def resolve_weight(consts: Constants, node: ir.Node, input_index: int) -> WeightSource | None:
    """Describe the constant behind ``node.inputs[input_index]``; None when it is not constant."""
    name = node_input(node, input_index)
    if name is None:
        return None
    value = consts.get(name)
    if value is not None:
        return WeightSource("float", name, value, owner=node, owner_index=input_index)
    dq = name.producer()
    if dq is not None and (dq.op_type in _DECODE or _scaled_decode(dq)):
        decoded = _decoded(consts, name)
        return None if decoded is None else WeightSource("shared", name, decoded, owner=node, owner_index=input_index)
    if dq is None or dq.op_type != "DequantizeLinear" or attr(dq, "block_size", 0):
        return None
    scale = consts.get(node_input(dq, 1))
    zp_value = node_input(dq, 2)
    zp = consts.get(zp_value)
    if scale is None or (zp_value is not None and zp is None):
        return None
    axis = int(attr(dq, "axis", 1))
    stored = consts.get(dq.inputs[0])
    if stored is not None:
        return WeightSource("dq", dq.inputs[0], stored, scale, zp, axis, owner=dq, owner_index=0)
    q = dq.inputs[0].producer() if dq.inputs[0] is not None else None
    if q is None or q.op_type != "QuantizeLinear":
        return None
    fw = consts.get(q.inputs[0])
    if fw is None:
        return None
    return WeightSource("qdq", q.inputs[0], fw, scale, zp, axis, owner=q, owner_index=0)


_DECODE = ("Gather", "GatherElements", "Reshape")


def _scaled_decode(node: ir.Node) -> bool:
    """``Mul(Gather(...), scale)``: the INT8 grid's levels times each channel's scale, or a trained
    float codebook times the fold the centroid write-back kept."""
    if node.op_type != "Mul" or len(node.inputs) != 2:
        return False
    first = node.inputs[0].producer() if node.inputs[0] is not None else None
    return first is not None and first.op_type == "Gather"


def _decoded(consts: Constants, value: ir.Value | None) -> np.ndarray | None:
    """The weight a shared layer decodes: ``Gather(codebook, Cast(indices))`` per layer, or
    ``Reshape(GatherElements(codebooks, Cast(indices)))`` per channel, the first times a constant
    per-channel scale (``Mul``); None for anything else."""
    if value is None:
        return None
    if (array := consts.get(value)) is not None:
        return array
    node = value.producer()
    if node is None:
        return None
    if node.op_type == "Cast":
        return _decoded(consts, node_input(node, 0))
    if _scaled_decode(node):
        data, scale = _decoded(consts, node_input(node, 0)), consts.get(node_input(node, 1))
        return None if data is None or scale is None else (data * scale).astype(data.dtype)
    if node.op_type == "Reshape":
        data, shape = _decoded(consts, node_input(node, 0)), consts.get(node_input(node, 1))
        return None if data is None or shape is None or (shape == 0).any() else data.reshape(shape)
    if node.op_type in ("Gather", "GatherElements"):
        table, idx = consts.get(node_input(node, 0)), _decoded(consts, node_input(node, 1))
        if table is None or idx is None or not np.issubdtype(idx.dtype, np.integer):
            return None
        axis = int(attr(node, "axis", 0))
        if node.op_type == "Gather":
            return np.take(table, idx, axis=axis)
        return np.take_along_axis(table, idx.astype(np.int64), axis=axis)
    return None


def tensor_shapes(model: onnx.ModelProto) -> dict[str, tuple[int | str | None, ...]]:
    """Shapes of main-graph tensors from ONNX shape inference (dims: int, symbol name or None).

    Inference runs on the stage's input protobuf, before its conversion: ``infer_shapes`` hands a
    model over 2 GB to ONNX as a weightless copy, and the IR model is left without annotations to
    strip again."""
    from ..model_io import infer_shapes

    try:
        inferred = infer_shapes(model)
    except Exception:
        inferred = model
    out: dict[str, tuple[int | str | None, ...]] = {}
    g = inferred.graph
    for vi in list(g.value_info) + list(g.input) + list(g.output):
        tt = vi.type.tensor_type
        if not tt.HasField("shape"):
            continue
        dims: list[int | str | None] = []
        for d in tt.shape.dim:
            if d.HasField("dim_value"):
                dims.append(int(d.dim_value))
            else:
                dims.append(d.dim_param or None)
        out[vi.name] = tuple(dims)
    for t in g.initializer:
        out[t.name] = tuple(int(d) for d in t.dims)
    return out
