"""Centering a one-sided graph input before the Conv that reads it (TensorRT form).

TensorRT quantizes symmetrically, so an input in [0, 1] (an image scaled to [0, 1]) uses only the
codes 0..127: a step of 1/127 where the pixels have 1/255. Centered on c = (lo + hi) / 2, the input
spans all 255 codes, and the Conv still computes the same function, borders included:

    Conv_W(pad(x, 0)) = Conv_W(pad(x - c, -c)) + c * sum(W)

The Conv's padding becomes an explicit Pad with value -c (the code -127 exactly) before the Q/DQ,
and its bias gains c * sum(W) over each output channel's weights, taken from the float weights:
the constant part of the input then goes through the exact weights, and only the centered part
through the quantized ones. The calibration cache and the CPU form (uint8 with a zero point) do not
need it and ignore it.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import onnx

from ._ir import View, add_node, add_tensor, as_ir, attr, const_tensor, const_value, is_const
from .placement import QuantInput, QuantPlan
from .table import CalibrationTable

if TYPE_CHECKING:
    import onnx_ir as ir

__all__ = ["MIN_GAIN", "center_inputs", "centered", "write_centered_input"]

# the int8 step shrinks by amax / centered amax; below this (1.9 dB) an extra Sub and Pad is not worth it
MIN_GAIN = 1.25


def _can_center(node: "ir.Node") -> bool:
    """A Conv with constant float weights, a constant bias or none, and explicit padding."""
    import onnx_ir as ir

    if node.op_type != "Conv" or attr(node, "auto_pad", "NOTSET") != "NOTSET":
        return False
    w = const_tensor(node.inputs[1]) if len(node.inputs) > 1 else None
    bias = node.inputs[2] if len(node.inputs) > 2 else None
    return w is not None and w.dtype == ir.DataType.FLOAT and len(w.shape) >= 3 and (bias is None or is_const(bias))


def center_inputs(model: "onnx.ModelProto | ir.Model", plan: QuantPlan, table: CalibrationTable, enabled: bool = True) -> tuple[CalibrationTable, list[dict[str, Any]]]:
    """The table with ``details["centered"]`` naming the graph inputs worth centering (one-sided range
    and at least one Conv that can take it), and one report row per centered input. Decided anew
    for every table, so a saved one never carries an earlier run's choice (nor any when disabled)."""
    tensors = table.details.get("tensors", {}) if isinstance(table.details, dict) else {}
    chosen: dict[str, dict[str, float]] = {}
    g = View(as_ir(model)) if enabled and plan.activations else None
    for a in plan.activations if g is not None else ():
        t = a.tensor
        rng = (tensors.get(t) or {}).get("range")
        v = g.value(t)
        if t in chosen or v is None or not v.is_graph_input() or v.is_initializer() or not rng or t not in table.amax or a.index != 0 or not _can_center(g.by_name[a.node]):
            continue
        lo, hi = map(float, rng)
        half = (hi - lo) / 2
        if half > 0 and table.amax[t] / half >= MIN_GAIN:
            chosen[t] = {"center": (lo + hi) / 2, "amax": half}
    if not chosen and not centered(table):
        return table, []
    rows = [{"tensor": t, "range": tensors[t]["range"], "center": round(c["center"], 6), "amax": round(table.amax[t], 6),
             "centered_amax": round(c["amax"], 6), "gain_db": round(20 * np.log10(table.amax[t] / c["amax"]), 2)} for t, c in chosen.items()]
    details = {k: v for k, v in table.details.items() if k != "centered"}
    if chosen:
        details["centered"] = chosen
    return CalibrationTable(dict(table.amax), table.method, table.num_samples, details), rows


def centered(table: CalibrationTable) -> dict[str, dict[str, float]]:
    return table.details.get("centered", {}) if isinstance(table.details, dict) else {}


def write_centered_input(
    graph: "ir.Graph", node: "ir.Node", a: QuantInput, center: dict[str, float], zero_point: "ir.Value", suffix: str
) -> "tuple[ir.Value, np.ndarray, float] | None":
    """Sub, Pad (when the Conv pads), Q and DQ before ``node`` (``a.node``), whose padding and bias
    change to match; returns the DQ output, the new bias and the input scale (None: the Conv
    cannot take it)."""
    import onnx_ir as ir

    if a.index != 0 or not _can_center(node):
        return None
    c, scale = np.float32(center["center"]), np.float32(center["amax"] / 127.0)
    base = f"{a.tensor}_centered_{node.name}{suffix}"
    c_v, s_v = add_tensor(graph, np.array(c), f"{base}_center"), add_tensor(graph, np.array(scale), f"{base}_scale")
    before = ("before", node)
    x = add_node(before, "Sub", [node.inputs[0], c_v], f"{base}_sub", f"{base}_Sub").outputs[0]
    pads = list(attr(node, "pads", []) or [])
    if any(pads):
        n = len(pads) // 2
        p_v = add_tensor(graph, np.array([0, 0, *pads[:n], 0, 0, *pads[n:]], np.int64), f"{base}_pads")
        fill = add_tensor(graph, np.array(-c), f"{base}_pad_value")
        x = add_node(before, "Pad", [x, p_v, fill], f"{base}_padded", f"{base}_Pad").outputs[0]
        node.attributes["pads"] = ir.AttrInt64s("pads", [0] * len(pads))
    q = add_node(before, "QuantizeLinear", [x, s_v, zero_point], f"{base}_quantized", f"{base}_QuantizeLinear").outputs[0]
    dq = add_node(before, "DequantizeLinear", [q, s_v, zero_point], f"{base}_dequantized", f"{base}_DequantizeLinear").outputs[0]
    w = const_value(node.inputs[1])
    old = node.inputs[2] if len(node.inputs) > 2 else None
    bias = const_value(old) if old is not None else np.zeros(w.shape[0], np.float32)
    bias = (bias.astype(np.float64) + float(c) * w.sum(axis=tuple(range(1, w.ndim)), dtype=np.float64)).astype(np.float32)
    b_v = add_tensor(graph, bias, f"{base}_bias")
    if len(node.inputs) < 3:
        node.resize_inputs(3)
    node.replace_input_with(2, b_v)
    return dq, bias, float(scale)
