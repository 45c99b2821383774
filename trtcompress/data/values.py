"""Valid values of a model's integer inputs, read from the graph.

Random integers drawn from a fixed range end in ONNX Runtime errors on real models: a BERT-style
encoder's ``token_type_ids`` index a token-type table of 2 rows, so any value past 1 is an
out-of-range Gather. Each integer input is followed through the ops that keep its values (Cast,
Reshape, Unsqueeze, ...), subgraphs of If/Loop/Scan included, to what reads it:

- the indices of a Gather on a constant table: ``[0, rows)``;
- Equal with a constant (a sample rate compared with 16000): that constant;
- an input named like a mask (``attention_mask``): 0/1 with the ones first, as padding has them.

Inputs none of these reach keep ``[0, DEFAULT_HIGH)``.
"""
from __future__ import annotations

import dataclasses
import re
from collections import defaultdict
from typing import Sequence

import numpy as np
import onnx
from onnx import numpy_helper

from ..subgraphs import walk

__all__ = ["IntValues", "integer_values", "DEFAULT_HIGH"]

DEFAULT_HIGH = 10
# ops whose output holds the same values as their first input (only their layout changes)
_KEEPS_VALUES = frozenset({"Cast", "Identity", "Reshape", "Unsqueeze", "Squeeze", "Flatten", "Expand", "Transpose", "Slice", "Tile"})
_MASK_NAME = re.compile(r"mask", re.IGNORECASE)


@dataclasses.dataclass(frozen=True)
class IntValues:
    """Integers in ``[low, high)``, or one of ``choices``, or a 0/1 ``mask`` with the ones first
    along the last axis; ``why`` says where the range was read."""

    low: int = 0
    high: int = DEFAULT_HIGH
    choices: tuple[int, ...] = ()
    mask: bool = False
    why: str = "default"

    def sample(self, rng: np.random.Generator, shape: Sequence[int], dtype: np.dtype) -> np.ndarray:
        shape = tuple(shape)
        if self.mask:
            if not shape:
                return np.ones((), dtype)
            # each row: a random number of real positions (at least one), then padding
            lengths = rng.integers(1, shape[-1] + 1, shape[:-1] + (1,))
            return (np.arange(shape[-1]) < lengths).astype(dtype)
        if self.choices:
            return rng.choice(np.asarray(self.choices), size=shape).astype(dtype)
        return rng.integers(self.low, self.high, shape).astype(dtype)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def integer_values(model: onnx.ModelProto, names: Sequence[str]) -> dict[str, IntValues]:
    """What each input in ``names`` may hold, from the nodes that read it."""
    consumers: dict[str, list[tuple[onnx.NodeProto, int]]] = defaultdict(list)
    consts: dict[str, onnx.TensorProto | onnx.NodeProto] = {}
    for graph, _ in walk(model.graph):
        consts.update({t.name: t for t in graph.initializer})
        for node in graph.node:
            if node.op_type == "Constant" and node.output:
                consts[node.output[0]] = node
            for i, name in enumerate(node.input):
                if name:
                    consumers[name].append((node, i))
    return {name: _values_of(name, consumers, consts) for name in names}


def _values_of(name: str, consumers, consts) -> IntValues:
    rows: list[tuple[int, str]] = []
    choices: set[int] = set()
    seen, todo = {name}, [name]
    while todo:
        tensor = todo.pop()
        for node, i in consumers.get(tensor, ()):
            if (node.op_type in _KEEPS_VALUES or node.op_type == "Gather") and i == 0:
                for out in node.output:
                    if out and out not in seen:
                        seen.add(out)
                        todo.append(out)
            elif node.op_type == "Gather" and i == 1:
                table = _shape(consts.get(node.input[0]))
                if table:
                    axis = _attr_int(node, "axis", 0) % len(table)
                    rows.append((table[axis], f"indices of Gather {node.name or node.output[0]!r} on a table of {table[axis]} rows"))
            elif node.op_type == "Equal":
                other = node.input[1 - i] if len(node.input) == 2 else ""
                value = _value(consts.get(other))
                if value is not None and value.size == 1 and value.dtype.kind in "iu":
                    choices.add(int(value.reshape(())))
    if rows:
        high, why = min(rows)
        return IntValues(0, high, why=why)
    if choices:
        return IntValues(choices=tuple(sorted(choices)), why=f"compared with {', '.join(map(str, sorted(choices)))}")
    if _MASK_NAME.search(name):
        return IntValues(0, 2, mask=True, why="an attention mask (by its name): ones, then padding")
    return IntValues()


def _shape(c) -> tuple[int, ...] | None:
    if isinstance(c, onnx.TensorProto):
        return tuple(int(d) for d in c.dims)
    value = _value(c)
    return None if value is None else value.shape


def _value(c) -> np.ndarray | None:
    if isinstance(c, onnx.TensorProto):
        return numpy_helper.to_array(c) if not c.external_data and np.prod(c.dims, dtype=np.int64) <= 16 else None
    if isinstance(c, onnx.NodeProto):
        for a in c.attribute:
            if a.name == "value":
                return numpy_helper.to_array(a.t)
            if a.name in ("value_int", "value_ints"):
                return np.asarray(onnx.helper.get_attribute_value(a), dtype=np.int64)
    return None


def _attr_int(node: onnx.NodeProto, name: str, default: int) -> int:
    for a in node.attribute:
        if a.name == name:
            return int(a.i)
    return default
