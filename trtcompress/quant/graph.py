"""A read-only index over an ONNX graph: producers, consumers, constants, topological order.

Placement rules and both lowerings ask the same questions ("is this input a constant?", "who
consumes this tensor?"); answering them from one index keeps each rule a few lines.
"""
from __future__ import annotations

import dataclasses
from typing import Iterable

import numpy as np
import onnx
from onnx import numpy_helper

from ..errors import ModelError
from ..subgraphs import outer_names
from ..weightless import tensor_array

__all__ = ["GraphIndex", "node_names"]


def node_names(model: onnx.ModelProto) -> onnx.ModelProto:
    """Give every unnamed node a unique name (in place); include/exclude and reports need names."""
    seen: set[str] = set()
    for i, n in enumerate(model.graph.node):
        name = n.name or f"{n.op_type}_{i}"
        while name in seen:
            name = f"{name}_{i}"
        n.name = name
        seen.add(name)
    return model


@dataclasses.dataclass
class GraphIndex:
    """Producers, consumers and constant values of a (main) graph."""

    model: onnx.ModelProto

    def __post_init__(self) -> None:
        g = self.model.graph
        self.nodes: list[onnx.NodeProto] = list(g.node)
        self.by_name = {n.name: n for n in self.nodes}
        self.initializers = {t.name: t for t in g.initializer}
        self.producer: dict[str, onnx.NodeProto] = {}
        self.consumers: dict[str, list[onnx.NodeProto]] = {}
        for n in self.nodes:
            for o in n.output:
                if o:
                    self.producer[o] = n
            for i in n.input:
                if i:
                    self.consumers.setdefault(i, []).append(n)
            for i in outer_names(n):  # read inside an If/Loop/Scan body: the node consumes it
                self.consumers.setdefault(i, []).append(n)
        self.graph_inputs = {v.name for v in g.input if v.name not in self.initializers}
        self.graph_outputs = {v.name for v in g.output}
        self._const_cache: dict[str, np.ndarray | None] = {}
        self.elem_type: dict[str, int] = {}
        self.shape: dict[str, tuple[int | None, ...]] = {}
        for vi in list(g.input) + list(g.output) + list(g.value_info):
            tt = vi.type.tensor_type
            self.elem_type[vi.name] = tt.elem_type
            if tt.HasField("shape"):
                self.shape[vi.name] = tuple(d.dim_value if d.HasField("dim_value") else None for d in tt.shape.dim)
        for t in g.initializer:
            self.elem_type[t.name] = t.data_type
            self.shape[t.name] = tuple(t.dims)

    def is_const(self, name: str) -> bool:
        """An initializer, or the output of a Constant node."""
        if name in self.initializers:
            return True
        p = self.producer.get(name)
        return p is not None and p.op_type == "Constant"

    def const_value(self, name: str) -> np.ndarray | None:
        if name not in self._const_cache:
            value = None
            if name in self.initializers:
                value = tensor_array(self.initializers[name])
            else:
                p = self.producer.get(name)
                if p is not None and p.op_type == "Constant":
                    for a in p.attribute:
                        if a.name == "value":
                            value = numpy_helper.to_array(a.t)
            self._const_cache[name] = value
        return self._const_cache[name]

    def is_float(self, name: str) -> bool:
        return self.elem_type.get(name, onnx.TensorProto.FLOAT) == onnx.TensorProto.FLOAT

    def consumers_of(self, name: str) -> list[onnx.NodeProto]:
        return self.consumers.get(name, [])

    def attr(self, node: onnx.NodeProto, name: str, default=None):
        for a in node.attribute:
            if a.name == name:
                return onnx.helper.get_attribute_value(a)
        return default

    def upstream(self, name: str, through: Iterable[str], depth: int = 8) -> onnx.NodeProto | None:
        """The first producer of ``name`` that is not one of the ``through`` op types."""
        through = set(through)
        for _ in range(depth):
            p = self.producer.get(name)
            if p is None or p.op_type not in through:
                return p
            name = p.input[0]
        return None


def require_opset(model: onnx.ModelProto, minimum: int = 13) -> int:
    """The default-domain opset; per-axis Q/DQ needs 13 or newer."""
    for o in model.opset_import:
        if o.domain in ("", "ai.onnx"):
            if o.version < minimum:
                raise ModelError(
                    f"the model uses opset {o.version}; per-channel Q/DQ needs opset {minimum} or newer: "
                    f"convert it with onnx.version_converter or re-export with opset_version={minimum}"
                )
            return o.version
    raise ModelError("the model has no default-domain opset import; re-export it")
