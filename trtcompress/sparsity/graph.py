"""Read and rewrite the constants of an ONNX graph, and find the stored values behind a weight input.

A weight reaches a compute node as a float initializer or Constant node, as int8 values through
DequantizeLinear (a Q/DQ model written for TensorRT), or as float values through a
QuantizeLinear -> DequantizeLinear pair. :func:`resolve_weight` returns one description for all three
so inspection and pruning treat them alike.
"""
from __future__ import annotations

import dataclasses
from collections import defaultdict
from typing import Iterator

import numpy as np
import onnx
from onnx import numpy_helper

from ..model_io import infer_shapes
from ..subgraphs import outer_names, walk

__all__ = ["GraphIndex", "WeightSource", "resolve_weight", "tensor_shapes"]


class GraphIndex:
    """Producers, consumers and constants of the main graph and of every If/Loop/Scan body in it,
    with writes that keep them in sync.

    Subgraph nodes are indexed with the main graph's (``scope`` says where each lives): their
    weights are read and rewritten like any other. A name defined in more than one graph (two
    branches reusing a name) is left out of the constants, so no layer reads another's weight.
    """

    def __init__(self, model: onnx.ModelProto) -> None:
        self.model = model
        g = model.graph
        self.initializers: dict[str, onnx.TensorProto] = {}
        self.constant_nodes: dict[str, onnx.NodeProto] = {}
        self.producer: dict[str, onnx.NodeProto] = {}
        self.consumers: dict[str, list[tuple[onnx.NodeProto | None, int]]] = defaultdict(list)
        self.scope: dict[int, str] = {}  # id(node) -> "" (main graph) or the subgraph's path
        self._all: list[onnx.NodeProto] = []
        defined: dict[str, int] = defaultdict(int)
        self.graph_outputs = {o.name for o in g.output}
        for graph, scope in walk(g):
            for t in graph.initializer:
                self.initializers[t.name] = t
                defined[t.name] += 1
            for node in graph.node:
                self.scope[id(node)] = scope
                self._all.append(node)
                if node.op_type == "Constant" and node.output:
                    self.constant_nodes[node.output[0]] = node
                for out in node.output:
                    if out:
                        self.producer[out] = node
                        defined[out] += 1
                for i, name in enumerate(node.input):
                    if name:
                        self.consumers[name].append((node, i))
                for name in outer_names(node):
                    self.consumers[name].append((None, -1))  # used inside an If/Loop/Scan body
            if scope:
                self.graph_outputs |= {o.name for o in graph.output}
        for name in [n for n, k in defined.items() if k > 1]:
            self.initializers.pop(name, None)
            self.constant_nodes.pop(name, None)
        self._names = set(defined) | {i.name for i in g.input}
        self._cache: dict[str, np.ndarray] = {}

    # -- constants -------------------------------------------------------------------------
    def is_const(self, name: str) -> bool:
        return name in self.initializers or name in self.constant_nodes

    def const(self, name: str) -> np.ndarray | None:
        """The value of an initializer or Constant node output, else None."""
        if name in self._cache:
            return self._cache[name]
        if name in self.initializers:
            arr = numpy_helper.to_array(self.initializers[name])
        elif name in self.constant_nodes:
            arr = _constant_value(self.constant_nodes[name])
            if arr is None:
                return None
        else:
            return None
        self._cache[name] = arr
        return arr

    def set_const(self, name: str, value: np.ndarray) -> None:
        """Overwrite the values of an existing constant in place (same name)."""
        value = np.ascontiguousarray(value)
        if name in self.initializers and value.dtype.kind in "biuf":
            # the bytes alone are swapped in: a new tensor copied over the old would hold a large
            # weight twice more
            t = self.initializers[name]
            for field in ("dims", "float_data", "int32_data", "int64_data", "double_data", "uint64_data", "external_data", "data_location"):
                t.ClearField(field)
            t.dims.extend(value.shape)
            t.data_type = onnx.helper.np_dtype_to_tensor_dtype(value.dtype)
            t.raw_data = value.astype(value.dtype.newbyteorder("<"), copy=False).tobytes()
            self._cache[name] = value
            return
        tensor = numpy_helper.from_array(value, name)
        if name in self.initializers:
            self.initializers[name].CopyFrom(tensor)
        elif name in self.constant_nodes:
            node = self.constant_nodes[name]
            del node.attribute[:]
            node.attribute.append(onnx.helper.make_attribute("value", tensor))
        else:
            raise KeyError(name)
        self._cache[name] = value

    def set_node_const(self, node: onnx.NodeProto, index: int, value: np.ndarray, suffix: str = "sparse") -> str:
        """Give ``node``'s input ``index`` a new constant value without touching other users.

        The constant is rewritten in place when ``node`` is its only user; otherwise a copy with a
        new name is added and only ``node`` is pointed at it. Returns the name now used.
        """
        name = node.input[index]
        users = self.consumers.get(name, [])
        if len(users) == 1 and name not in self.graph_outputs and self.is_const(name):
            self.set_const(name, value)
            return name
        new = self.unique_name(f"{name}_{suffix}")
        self.model.graph.initializer.append(numpy_helper.from_array(np.ascontiguousarray(value), new))
        self.initializers[new] = self.model.graph.initializer[-1]
        self._cache[new] = value
        self.consumers[name] = [(n, i) for n, i in users if not (n is node and i == index)]
        node.input[index] = new
        self.consumers[new].append((node, index))
        return new

    def unique_name(self, base: str) -> str:
        name, k = base, 1
        while name in self._names:
            name, k = f"{base}_{k}", k + 1
        self._names.add(name)
        return name

    def single_consumer(self, name: str) -> onnx.NodeProto | None:
        users = self.consumers.get(name, [])
        if len(users) == 1 and users[0][0] is not None and name not in self.graph_outputs:
            return users[0][0]
        return None

    def nodes(self) -> Iterator[onnx.NodeProto]:
        """Every node, main graph first, then each subgraph's in walk order."""
        return iter(self._all)


def _constant_value(node: onnx.NodeProto) -> np.ndarray | None:
    for attr in node.attribute:
        if attr.name == "value":
            return numpy_helper.to_array(attr.t)
        if attr.name == "value_float":
            return np.array(attr.f, dtype=np.float32)
        if attr.name == "value_floats":
            return np.array(list(attr.floats), dtype=np.float32)
        if attr.name == "value_int":
            return np.array(attr.i, dtype=np.int64)
        if attr.name == "value_ints":
            return np.array(list(attr.ints), dtype=np.int64)
    return None


def _attr(node: onnx.NodeProto, name: str, default):
    for a in node.attribute:
        if a.name == name:
            return onnx.helper.get_attribute_value(a)
    return default


@dataclasses.dataclass
class WeightSource:
    """Where the values of a weight input live.

    ``kind`` is ``"float"`` (a plain constant), ``"dq"`` (integer values dequantized by a
    DequantizeLinear: zero is the zero point) or ``"qdq"`` (a float constant quantized and
    dequantized in the graph). ``stored`` names the constant that holds the values to rewrite.
    """

    kind: str
    stored: str
    values: np.ndarray
    scale: np.ndarray | None = None
    zero_point: np.ndarray | None = None
    axis: int = 1
    owner: onnx.NodeProto | None = None  # the node whose input ``stored`` is (for copy-on-write)
    owner_index: int = 0

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
        if self.kind == "float":
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


def resolve_weight(index: GraphIndex, node: onnx.NodeProto, input_index: int) -> WeightSource | None:
    """Describe the constant behind ``node.input[input_index]``; None when it is not constant."""
    if input_index >= len(node.input) or not node.input[input_index]:
        return None
    name = node.input[input_index]
    value = index.const(name)
    if value is not None:
        return WeightSource("float", name, value, owner=node, owner_index=input_index)
    dq = index.producer.get(name)
    if dq is None or dq.op_type != "DequantizeLinear" or _attr(dq, "block_size", 0):
        return None
    scale = index.const(dq.input[1]) if len(dq.input) > 1 else None
    zp = index.const(dq.input[2]) if len(dq.input) > 2 and dq.input[2] else None
    if scale is None or (len(dq.input) > 2 and dq.input[2] and zp is None):
        return None
    axis = int(_attr(dq, "axis", 1))
    stored = index.const(dq.input[0])
    if stored is not None:
        return WeightSource("dq", dq.input[0], stored, scale, zp, axis, owner=dq, owner_index=0)
    q = index.producer.get(dq.input[0])
    if q is None or q.op_type != "QuantizeLinear":
        return None
    fw = index.const(q.input[0])
    if fw is None:
        return None
    return WeightSource("qdq", q.input[0], fw, scale, zp, axis, owner=q, owner_index=0)


def tensor_shapes(model: onnx.ModelProto) -> dict[str, tuple[int | str | None, ...]]:
    """Shapes of graph tensors from ONNX shape inference (dims: int, symbol name or None)."""
    try:
        inferred = infer_shapes(model)  # on the weightless copy for a model over 2 GB
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
