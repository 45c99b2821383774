"""What the low-rank rules need to know about an ONNX graph: constants, shapes, attributes."""
from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import onnx
from onnx import helper, numpy_helper

from ..model_io import infer_shapes

__all__ = ["GraphInfo", "attrs"]


def attrs(node: onnx.NodeProto) -> dict[str, Any]:
    return {a.name: helper.get_attribute_value(a) for a in node.attribute}


@dataclasses.dataclass
class GraphInfo:
    """Initialisers, graph inputs and inferred shapes of a model (dynamic dimensions are ``None``)."""

    model: onnx.ModelProto
    initializers: dict[str, onnx.TensorProto]
    graph_inputs: set[str]
    shapes: dict[str, list[int | None]]
    elem_types: dict[str, int]

    @classmethod
    def of(cls, model: onnx.ModelProto) -> "GraphInfo":
        g = model.graph
        inits = {t.name: t for t in g.initializer}
        shapes: dict[str, list[int | None]] = {}
        types: dict[str, int] = {}
        try:
            inferred = infer_shapes(model)
        except Exception:  # shapes are only used for FLOP counts; the rules still work without them
            inferred = model
        ig = inferred.graph
        for vi in list(ig.input) + list(ig.value_info) + list(ig.output):
            tt = vi.type.tensor_type
            types[vi.name] = tt.elem_type
            if tt.HasField("shape"):
                shapes[vi.name] = [int(d.dim_value) if d.HasField("dim_value") and d.dim_value > 0 else None for d in tt.shape.dim]
        for t in g.initializer:
            shapes[t.name] = list(t.dims)
            types[t.name] = t.data_type
        return cls(model, inits, {i.name for i in g.input}, shapes, types)

    def constant(self, name: str) -> np.ndarray | None:
        """The value of an initialiser that a user cannot override (not also a graph input)."""
        if name in self.graph_inputs or name not in self.initializers:
            return None
        return numpy_helper.to_array(self.initializers[name])

    def per_sample(self, name: str, dims: slice | None = None) -> int | None:
        """Product of ``name``'s dimensions in ``dims``, a dynamic dimension counting as 1 (batch)."""
        shape = self.shapes.get(name)
        if shape is None:
            return None
        sel = shape[dims] if dims is not None else shape
        return int(np.prod([d if d is not None else 1 for d in sel], dtype=np.int64))
