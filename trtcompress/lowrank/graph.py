"""What the low-rank rules need to know about an ONNX graph: constants, shapes, attributes."""
from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import onnx
from onnx import helper, numpy_helper

from ..model_io import infer_shapes
from ..subgraphs import walk

__all__ = ["GraphInfo", "attrs"]


def attrs(node: onnx.NodeProto) -> dict[str, Any]:
    return {a.name: helper.get_attribute_value(a) for a in node.attribute}


@dataclasses.dataclass
class GraphInfo:
    """Constants, graph inputs and inferred shapes of a model (dynamic dimensions are ``None``).

    ``initializers`` holds the constants of the main graph and of every If/Loop/Scan body: their
    initialisers and the tensors of their Constant nodes (silero-vad keeps its weights as Constant
    nodes inside If branches). A name defined in more than one graph is left out."""

    model: onnx.ModelProto
    initializers: dict[str, onnx.TensorProto]
    graph_inputs: set[str]
    shapes: dict[str, list[int | None]]
    elem_types: dict[str, int]

    @classmethod
    def of(cls, model: onnx.ModelProto) -> "GraphInfo":
        g = model.graph
        inits: dict[str, onnx.TensorProto] = {}
        defined: dict[str, int] = {}
        for graph, _ in walk(g):
            for t in graph.initializer:
                inits[t.name] = t
                defined[t.name] = defined.get(t.name, 0) + 1
            for n in graph.node:
                for o in n.output:
                    defined[o] = defined.get(o, 0) + 1
                if n.op_type == "Constant" and n.output and n.attribute and n.attribute[0].name == "value":
                    inits[n.output[0]] = n.attribute[0].t
        for name in [k for k, v in defined.items() if v > 1]:
            inits.pop(name, None)
        shapes: dict[str, list[int | None]] = {}
        types: dict[str, int] = {}
        try:
            inferred = infer_shapes(model)
        except Exception:  # shapes are only used for FLOP counts; the rules still work without them
            inferred = model
        value_infos = [vi for sub, _ in walk(inferred.graph) for vi in list(sub.input) + list(sub.value_info) + list(sub.output)]
        for vi in value_infos:
            tt = vi.type.tensor_type
            types[vi.name] = tt.elem_type
            if tt.HasField("shape"):
                shapes[vi.name] = [int(d.dim_value) if d.HasField("dim_value") and d.dim_value > 0 else None for d in tt.shape.dim]
        for name, t in inits.items():
            shapes[name] = list(t.dims)
            types[name] = t.data_type
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
