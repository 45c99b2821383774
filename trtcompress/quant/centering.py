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

from typing import Any

import numpy as np
import onnx
from onnx import helper, numpy_helper

from .graph import GraphIndex
from .placement import QuantInput, QuantPlan
from .table import CalibrationTable

__all__ = ["MIN_GAIN", "center_inputs", "centered", "write_centered_input"]

# the int8 step shrinks by amax / centered amax; below this (1.9 dB) an extra Sub and Pad is not worth it
MIN_GAIN = 1.25


def _can_center(g: GraphIndex, node: onnx.NodeProto) -> bool:
    """A Conv with constant float weights, a constant bias or none, and explicit padding."""
    if node.op_type != "Conv" or g.attr(node, "auto_pad", b"NOTSET") not in (b"NOTSET", "NOTSET"):
        return False
    w = g.const_value(node.input[1]) if len(node.input) > 1 else None
    has_bias = len(node.input) > 2 and node.input[2]
    return w is not None and w.dtype == np.float32 and w.ndim >= 3 and (not has_bias or g.const_value(node.input[2]) is not None)


def center_inputs(g: GraphIndex, plan: QuantPlan, table: CalibrationTable, enabled: bool = True) -> tuple[CalibrationTable, list[dict[str, Any]]]:
    """The table with ``details["centered"]`` naming the graph inputs worth centering (one-sided range
    and at least one Conv that can take it), and one report row per centered input. Decided anew
    for every table, so a saved one never carries an earlier run's choice (nor any when disabled)."""
    tensors = table.details.get("tensors", {}) if isinstance(table.details, dict) else {}
    chosen: dict[str, dict[str, float]] = {}
    for a in plan.activations if enabled else ():
        t = a.tensor
        rng = (tensors.get(t) or {}).get("range")
        if t in chosen or t not in g.graph_inputs or not rng or t not in table.amax or a.index != 0 or not _can_center(g, g.by_name[a.node]):
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
    g: GraphIndex, a: QuantInput, center: dict[str, float], zp_name: str, suffix: str, new_inits: list, pending: dict
) -> tuple[str, np.ndarray, float] | None:
    """Sub, Pad (when the Conv pads), Q and DQ before ``a.node``, whose padding and bias change to
    match; returns the DQ output, the new bias and the input scale (None: the Conv cannot take it)."""
    node = g.by_name[a.node]
    if a.index != 0 or not _can_center(g, node):
        return None
    c, scale = np.float32(center["center"]), np.float32(center["amax"] / 127.0)
    base = f"{a.tensor}_centered_{node.name}{suffix}"
    new_inits += [numpy_helper.from_array(np.array(c), f"{base}_center"), numpy_helper.from_array(np.array(scale), f"{base}_scale")]
    nodes = [helper.make_node("Sub", [a.tensor, f"{base}_center"], [f"{base}_sub"], name=f"{base}_Sub")]
    x = f"{base}_sub"
    pads = list(g.attr(node, "pads", []) or [])
    if any(pads):
        n = len(pads) // 2
        new_inits += [numpy_helper.from_array(np.array([0, 0, *pads[:n], 0, 0, *pads[n:]], np.int64), f"{base}_pads"),
                      numpy_helper.from_array(np.array(-c), f"{base}_pad_value")]
        nodes.append(helper.make_node("Pad", [x, f"{base}_pads", f"{base}_pad_value"], [f"{base}_padded"], name=f"{base}_Pad"))
        x = f"{base}_padded"
        for attr in node.attribute:
            if attr.name == "pads":
                attr.CopyFrom(helper.make_attribute("pads", [0] * len(pads)))
    q, dq = f"{base}_quantized", f"{base}_dequantized"
    nodes += [helper.make_node("QuantizeLinear", [x, f"{base}_scale", zp_name], [q], name=f"{base}_QuantizeLinear"),
              helper.make_node("DequantizeLinear", [q, f"{base}_scale", zp_name], [dq], name=f"{base}_DequantizeLinear")]
    pending.setdefault(a.node, []).extend(nodes)
    w = g.const_value(node.input[1])
    bias = g.const_value(node.input[2]) if len(node.input) > 2 and node.input[2] else np.zeros(w.shape[0], np.float32)
    bias = (bias.astype(np.float64) + float(c) * w.sum(axis=tuple(range(1, w.ndim)), dtype=np.float64)).astype(np.float32)
    new_inits.append(numpy_helper.from_array(bias, f"{base}_bias"))
    if len(node.input) > 2:
        node.input[2] = f"{base}_bias"
    else:
        node.input.append(f"{base}_bias")
    return dq, bias, float(scale)
