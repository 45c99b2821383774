"""The TensorRT form: explicit, symmetric INT8 QuantizeLinear/DequantizeLinear pairs.

Activations: one Q/DQ pair per planned tensor (int8, zero point 0, scalar float32 scale), shared by
every quantized consumer; float consumers keep reading the original tensor. Weights: per-channel
scales on the axis the plan gives.

Weights are written, by default, as float initializers followed by Q and DQ (``weights="float"``):
this is the form a QAT export produces, the one every TensorRT release with explicit quantization
(8.x, 10.x, 11.x) parses, and TensorRT quantizes the weights itself with the given scales when it
builds the engine ("Quantized Weights" in TensorRT's explicit-quantization docs). ``weights="int8"``
stores pre-quantized int8 initializers followed by DQ only (4x smaller file, accepted by recent
TensorRT releases), for users who need the smaller artifact.
"""
from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any

import numpy as np
import onnx

from ..errors import ConfigError
from ._ir import View, add_node, add_tensor, as_ir, const_value, drop_unused_initializers, to_proto
from .centering import centered, write_centered_input
from .placement import QuantPlan, WeightSpec
from .scales import activation_scale, quantize_weight, scales_from_amax, weight_amax
from .table import CalibrationTable

if TYPE_CHECKING:
    import onnx_ir as ir

__all__ = ["write_trt_qdq", "SharedWeights", "WEIGHT_FORMATS"]

WEIGHT_FORMATS = ("float", "int8")


@dataclasses.dataclass
class SharedWeights:
    """What calls of :func:`write_trt_qdq` that add Q/DQ sets to one growing graph share: each
    weight's amax, and the DQ output already written for a weight, axis and scale. Each weight is
    then read, quantized and stored once, however many sets read it (on a 2 GB MatMul, five range
    candidates cost five copies of its int8 form and a minute without this)."""

    amax: dict[tuple[str, int | None], np.ndarray] = dataclasses.field(default_factory=dict)
    dq: dict[tuple[str, int | None, bytes], str] = dataclasses.field(default_factory=dict)


def write_trt_qdq(
    model: "onnx.ModelProto | ir.Model",
    plan: QuantPlan,
    table: CalibrationTable,
    weights: str = "float",
    suffix: str = "",
    shared: SharedWeights | None = None,
    in_place: bool = False,
) -> "onnx.ModelProto | ir.Model":
    """``model`` with Q/DQ inserted for TensorRT according to ``plan`` and ``table``; initializers
    nobody reads any more (a centered Conv's old bias, int8-stored weights' float form) are dropped.

    A ModelProto gives a new ModelProto and is left as it is (onnx-ir wraps its tensors without
    copying them, so ``in_place`` has nothing left to save and is accepted for the callers that
    pass it); an onnx-ir model is changed in place and returned.
    ``suffix`` ends every name this adds, so several Q/DQ sets can live in one graph (the
    sensitivity shadows); ``shared`` (the same for every call on that graph) lets a set reuse a
    weight's DQ that an earlier set wrote."""
    del in_place
    if weights not in WEIGHT_FORMATS:
        raise ConfigError(f"weights must be one of {', '.join(WEIGHT_FORMATS)}, got {weights!r}")
    m = as_ir(model)
    _write(m, plan, table, weights, suffix, shared if shared is not None else SharedWeights())
    return to_proto(m, like=model) if isinstance(model, onnx.ModelProto) else m


def _write(m: "ir.Model", plan: QuantPlan, table: CalibrationTable, weights: str, suffix: str, shared: SharedWeights) -> None:
    from ..graph._util import require_opset

    require_opset(m, 13)
    g = View(m)
    graph = m.graph
    zp = add_tensor(graph, np.array(0, np.int8), f"trtcompress_qdq_zero_point_int8{suffix}")

    # Q/DQ go right before the node that reads them, in plan order (activations, then weights)
    rewire: list[tuple[ir.Node, int, ir.Value]] = []
    act_dq: dict[str, ir.Value] = {}
    own_input: dict[str, tuple[np.ndarray, float]] = {}  # a centered Conv's new bias and input scale
    centers = centered(table)
    for a in plan.activations:
        node = g.by_name[a.node]
        if a.tensor in centers:
            done = write_centered_input(graph, node, a, centers[a.tensor], zp, suffix)
            if done is not None:
                rewire.append((node, a.index, done[0]))
                own_input[a.node] = done[1:]
                continue
        if a.tensor not in act_dq:
            s = add_tensor(graph, np.array(activation_scale(table, a.tensor), np.float32), f"{a.tensor}_scale{suffix}")
            q = add_node(("before", node), "QuantizeLinear", [g.values[a.tensor], s, zp], f"{a.tensor}_quantized{suffix}", f"{a.tensor}_QuantizeLinear{suffix}")
            act_dq[a.tensor] = add_node(("before", node), "DequantizeLinear", [q.outputs[0], s, zp], f"{a.tensor}_dequantized{suffix}",
                                        f"{a.tensor}_DequantizeLinear{suffix}").outputs[0]
        rewire.append((node, a.index, act_dq[a.tensor]))

    w_dq: dict[tuple[str, int | None], ir.Value] = {}
    for w in plan.weights:
        key = (w.tensor, w.axis)
        if key not in w_dq:
            if key not in shared.amax:
                value = const_value(g.value(w.tensor))
                if value is None or value.dtype != np.float32:
                    continue  # rules only plan float constants; a non-float weight is left alone
                shared.amax[key] = weight_amax(value, w.axis)
            scale = scales_from_amax(shared.amax[key], *(own_input.get(w.node) or bias_and_input_scale(g, plan, table, w)))
            known = (*key, np.asarray(scale).tobytes())
            if known in shared.dq:
                w_dq[key] = g.values[shared.dq[known]]
            else:
                w_dq[key] = _weight_qdq(g, w, scale, weights, suffix, w_dq)
                shared.dq[known] = w_dq[key].name
                g.values[w_dq[key].name] = w_dq[key]
        rewire.append((g.by_name[w.node], w.index, w_dq[key]))
    for node, i, value in rewire:
        node.replace_input_with(i, value)
    _output_qdq(g, plan, table, zp, suffix)
    drop_unused_initializers(graph)  # a centered Conv's old bias; int8-stored weights' float form


def _output_qdq(g: View, plan: QuantPlan, table: CalibrationTable, zp: "ir.Value", suffix: str) -> None:
    """Q/DQ writing each graph output the plan stores in 8 bits (opt-in: outputs stay float by
    default): its producer writes ``<name>__float``, every reader of the name reads the DQ."""
    import onnx_ir as ir

    last: dict[ir.Node, ir.Node] = {}  # producer -> the last node written after it (outputs in order)
    for t in plan.output_tensors:
        if t not in table.amax:
            continue
        v = g.values[t]
        producer = v.producer()
        s = add_tensor(g.graph, np.array(activation_scale(table, t), np.float32), f"{t}__output_scale{suffix}")
        v.name = f"{t}__float{suffix}"
        out = ir.Value(name=t, shape=v.shape, type=v.type)
        ir.convenience.replace_all_uses_with(v, out, replace_graph_outputs=True)
        q = add_node(("after", last.get(producer, producer)), "QuantizeLinear", [v, s, zp], f"{t}__output_quantized{suffix}", f"{t}__output_QuantizeLinear{suffix}")
        dq = ir.node("DequantizeLinear", [q.outputs[0], s, zp], outputs=[out], name=f"{t}__output_DequantizeLinear{suffix}")
        g.graph.insert_after(q, dq)
        last[producer] = dq


def _weight_qdq(g: View, w: WeightSpec, scale: np.ndarray, weights: str, suffix: str, w_dq: dict) -> "ir.Value":
    """Q/DQ (float weights) or DQ (int8 weights) of ``w`` before its consumer; the DQ output."""
    base = (w.tensor if w.axis is None or sum(k[0] == w.tensor for k in w_dq) == 0 else f"{w.tensor}_axis{w.axis}") + suffix
    node = g.by_name[w.node]
    s = add_tensor(g.graph, np.asarray(scale, np.float32), f"{base}_scale")
    z = add_tensor(g.graph, np.zeros(np.shape(scale), np.int8), f"{base}_zero_point")
    axis: dict[str, Any] = {"axis": int(w.axis)} if w.axis is not None else {}
    if weights == "int8":
        q = add_tensor(g.graph, quantize_weight(const_value(g.values[w.tensor]), scale, w.axis), f"{base}_int8")
    else:
        q = add_node(("before", node), "QuantizeLinear", [g.values[w.tensor], s, z], f"{base}_quantized", f"{base}_QuantizeLinear", **axis).outputs[0]
    return add_node(("before", node), "DequantizeLinear", [q, s, z], f"{base}_dequantized", f"{base}_DequantizeLinear", **axis).outputs[0]


def bias_and_input_scale(g: Any, plan: QuantPlan, table: CalibrationTable, w: WeightSpec) -> tuple[np.ndarray | None, float | None]:
    """The constant bias of a Conv/ConvTranspose/Gemm and the scale of its quantized input (both
    forms take the weight scales from here, so they share them). ``g.by_name`` maps node names to
    onnx-ir nodes."""
    node = g.by_name[w.node]
    if node.op_type not in ("Conv", "ConvTranspose", "Gemm"):
        return None, None
    bias = const_value(node.inputs[2]) if len(node.inputs) > 2 else None
    act = next((a.tensor for a in plan.activations if a.node == w.node and a.index == 0), None)
    if bias is None or act is None or act not in table.amax:
        return None, None
    return bias, float(activation_scale(table, act))
