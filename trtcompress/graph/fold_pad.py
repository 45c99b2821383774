"""Fold a constant zero Pad into the Conv or pooling node that reads it.

Conv, and AveragePool counting padded cells (``count_include_pad``), compute the same thing from
their own ``pads`` as from zeros padded in front, asymmetric pads included. MaxPool pads with
-inf, not 0, so a zero Pad folds into it only when its input is provably >= 0 (it comes from a
Relu, a Sigmoid, or a Clip with a minimum >= 0). Only spatial axes may be padded, with
non-negative constant amounts, mode ``constant``, value 0, and no ``auto_pad`` or ``ceil_mode``
on the reader (their output sizes depend on the input size, which padding changes differently).
"""
from __future__ import annotations

import numpy as np
import onnx_ir as ir

from ._util import const_array, int_attr, ints_attr

__all__ = ["FoldPadPass"]

_NONNEGATIVE = frozenset({"Relu", "Sigmoid", "Softmax"})


class FoldPadPass(ir.passes.InPlacePass):
    """``self.folded`` maps the reader's op type to how many Pads it absorbed."""

    def __init__(self) -> None:
        super().__init__()
        self.folded: dict[str, int] = {}

    def call(self, model: ir.Model) -> ir.passes.PassResult:
        self.folded = {}
        graph = model.graph
        for pad in list(graph):
            if pad.op_type != "Pad" or pad.domain not in ("", "ai.onnx"):
                continue
            spatial = _spatial_pads(pad)
            out = pad.outputs[0]
            if spatial is None or out.is_graph_output() or not out.uses():
                continue
            readers = [use.node for use in out.uses()]
            if not all(use.idx == 0 and _can_absorb(use.node, pad) for use in out.uses()):
                continue
            for reader in set(readers):
                _absorb(reader, spatial)
                self.folded[reader.op_type] = self.folded.get(reader.op_type, 0) + 1
            ir.convenience.replace_all_uses_with(out, pad.inputs[0])
            graph.remove(pad, safe=True)
        return ir.passes.PassResult(model, modified=bool(self.folded))


def _spatial_pads(pad: ir.Node) -> list[int] | None:
    """[begin..., end...] over the spatial axes (2..), or None when the Pad cannot fold."""
    x = pad.inputs[0]
    rank = len(x.shape) if x.shape is not None else None
    mode = pad.attributes.get("mode")
    if rank is None or rank < 3 or (mode is not None and mode.as_string() != "constant"):
        return None
    if "pads" in pad.attributes:  # opset < 11
        pads = np.array(pad.attributes["pads"].as_ints())
        value = pad.attributes["value"].as_float() if "value" in pad.attributes else 0.0
    else:
        pads = const_array(pad.inputs[1]) if len(pad.inputs) > 1 else None
        if pads is None:
            return None
        cv = pad.inputs[2] if len(pad.inputs) > 2 else None
        value = 0.0
        if cv is not None:
            v = const_array(cv)
            if v is None or v.size != 1:
                return None
            value = float(v.reshape(-1)[0])
        axes_in = pad.inputs[3] if len(pad.inputs) > 3 else None
        if axes_in is not None:
            axes = const_array(axes_in)
            if axes is None:
                return None
            full = np.zeros(2 * rank, dtype=np.int64)
            for i, a in enumerate(int(a) % rank for a in axes):
                full[a], full[rank + a] = pads[i], pads[len(axes) + i]
            pads = full
    pads = [int(p) for p in np.asarray(pads).reshape(-1)]
    if value != 0.0 or len(pads) != 2 * rank or any(p < 0 for p in pads):
        return None
    if pads[0] or pads[1] or pads[rank] or pads[rank + 1]:
        return None  # batch or channel padding
    return pads[2:rank] + pads[rank + 2:]


def _can_absorb(node: ir.Node, pad: ir.Node) -> bool:
    if node.op_type not in ("Conv", "AveragePool", "MaxPool") or node.domain not in ("", "ai.onnx"):
        return False
    auto = node.attributes.get("auto_pad")
    if auto is not None and auto.as_string() not in ("NOTSET", ""):
        return False
    if int_attr(node, "ceil_mode", 0):
        return False
    if node.op_type == "AveragePool":
        own = ints_attr(node, "pads") or []
        return int_attr(node, "count_include_pad", 0) == 1 or not any(own)
    if node.op_type == "MaxPool":
        return len(node.outputs) == 1 and _nonnegative(pad.inputs[0])
    return True


def _nonnegative(value: ir.Value) -> bool:
    node = value.producer()
    if node is None:
        return False
    if node.op_type in _NONNEGATIVE:
        return True
    if node.op_type == "Clip":
        if "min" in node.attributes:
            return node.attributes["min"].as_float() >= 0
        low = const_array(node.inputs[1]) if len(node.inputs) > 1 and node.inputs[1] is not None else None
        return low is not None and float(low) >= 0
    return False


def _absorb(node: ir.Node, spatial: list[int]) -> None:
    own = ints_attr(node, "pads") or [0] * len(spatial)
    merged = [a + b for a, b in zip(own, spatial)]
    node.attributes["pads"] = ir.AttrInt64s("pads", merged)
    node.attributes.pop("auto_pad", None)
    if node.op_type == "AveragePool":
        node.attributes["count_include_pad"] = ir.AttrInt64("count_include_pad", 1)


