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

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from ..errors import ConfigError
from ..subgraphs import used_names
from .centering import centered, write_centered_input
from .graph import GraphIndex, require_opset
from .placement import QuantPlan, WeightSpec
from .scales import activation_scale, quantize_weight, scales_from_amax, weight_amax
from .table import CalibrationTable

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
    model: onnx.ModelProto,
    plan: QuantPlan,
    table: CalibrationTable,
    weights: str = "float",
    suffix: str = "",
    shared: SharedWeights | None = None,
    in_place: bool = False,
) -> onnx.ModelProto:
    """A copy of ``model`` (``model`` itself if ``in_place``) with Q/DQ inserted for TensorRT
    according to ``plan`` and ``table``.

    ``suffix`` ends every name this adds, so several Q/DQ sets can live in one graph (the
    sensitivity shadows); ``shared`` (the same for every call on that graph) lets a set reuse a
    weight's DQ that an earlier set wrote."""
    if weights not in WEIGHT_FORMATS:
        raise ConfigError(f"weights must be one of {', '.join(WEIGHT_FORMATS)}, got {weights!r}")
    if in_place:
        out = model
    else:
        out = onnx.ModelProto()
        out.CopyFrom(model)
    require_opset(out, 13)
    g = GraphIndex(out)
    new_inits: list[TensorProto] = []
    zp_name = f"trtcompress_qdq_zero_point_int8{suffix}"
    new_inits.append(numpy_helper.from_array(np.array(0, np.int8), zp_name))

    # (node, input index) -> replacement tensor name; pending Q/DQ nodes to emit before a consumer
    rewire: dict[tuple[str, int], str] = {}
    pending: dict[str, list[onnx.NodeProto]] = {}  # consumer node -> nodes to emit before it

    act_dq: dict[str, str] = {}
    centers = centered(table)
    own_input: dict[str, tuple[np.ndarray, float]] = {}  # a centered Conv's new bias and input scale
    for a in plan.activations:
        if a.tensor in centers:
            done = write_centered_input(g, a, centers[a.tensor], zp_name, suffix, new_inits, pending)
            if done is not None:
                rewire[(a.node, a.index)], own_input[a.node] = done[0], done[1:]
                continue
        if a.tensor not in act_dq:
            s_name = f"{a.tensor}_scale{suffix}"
            new_inits.append(numpy_helper.from_array(np.array(activation_scale(table, a.tensor), np.float32), s_name))
            q, dq = f"{a.tensor}_quantized{suffix}", f"{a.tensor}_dequantized{suffix}"
            pending.setdefault(a.node, []).extend(
                [
                    helper.make_node("QuantizeLinear", [a.tensor, s_name, zp_name], [q], name=f"{a.tensor}_QuantizeLinear{suffix}"),
                    helper.make_node("DequantizeLinear", [q, s_name, zp_name], [dq], name=f"{a.tensor}_DequantizeLinear{suffix}"),
                ]
            )
            act_dq[a.tensor] = dq
        rewire[(a.node, a.index)] = act_dq[a.tensor]

    w_dq: dict[tuple[str, int | None], str] = {}
    shared = shared if shared is not None else SharedWeights()
    for w in plan.weights:
        key = (w.tensor, w.axis)
        if key not in w_dq:
            if key not in shared.amax:
                value = g.const_value(w.tensor)
                if value is None or value.dtype != np.float32:
                    continue  # rules only plan float constants; a non-float weight is left alone
                shared.amax[key] = weight_amax(value, w.axis)
            scale = scales_from_amax(shared.amax[key], *(own_input.get(w.node) or bias_and_input_scale(g, plan, table, w)))
            known = (*key, np.asarray(scale).tobytes())
            if known in shared.dq:
                w_dq[key] = shared.dq[known]
            else:
                w_dq[key] = shared.dq[known] = _weight_qdq(g, w, scale, weights, suffix, w_dq, new_inits, pending)
        rewire[(w.node, w.index)] = w_dq[key]

    after = _output_qdq(plan, table, zp_name, suffix, new_inits)
    nodes: list[onnx.NodeProto] = []
    for n in out.graph.node:
        nodes.extend(pending.get(n.name, ()))
        for i in range(len(n.input)):
            if (n.name, i) in rewire:
                n.input[i] = rewire[(n.name, i)]
        for i, o in enumerate(n.output):
            if o in after:  # the producer writes the float value; Q/DQ writes the graph output
                n.output[i] = after[o][0].input[0]
        nodes.append(n)
        for o in n.output:
            nodes.extend(after.get(o.removesuffix(f"__float{suffix}"), ()))
    del out.graph.node[:]
    out.graph.node.extend(nodes)
    if weights == "int8":
        _drop_unused_initializers(out)
    out.graph.initializer.extend(new_inits)
    return out


def _output_qdq(plan: QuantPlan, table: CalibrationTable, zp_name: str, suffix: str, new_inits: list) -> dict[str, list[onnx.NodeProto]]:
    """Q/DQ writing each graph output the plan stores in 8 bits (opt-in: outputs stay float by default)."""
    after = {}
    for t in plan.output_tensors:
        if t not in table.amax:
            continue
        s_name, raw, q = f"{t}__output_scale{suffix}", f"{t}__float{suffix}", f"{t}__output_quantized{suffix}"
        new_inits.append(numpy_helper.from_array(np.array(activation_scale(table, t), np.float32), s_name))
        after[t] = [
            helper.make_node("QuantizeLinear", [raw, s_name, zp_name], [q], name=f"{t}__output_QuantizeLinear{suffix}"),
            helper.make_node("DequantizeLinear", [q, s_name, zp_name], [t], name=f"{t}__output_DequantizeLinear{suffix}"),
        ]
    return after


def _weight_qdq(g: GraphIndex, w: WeightSpec, scale: np.ndarray, weights: str, suffix: str, w_dq: dict, new_inits: list, pending: dict) -> str:
    """Q/DQ (float weights) or DQ (int8 weights) of ``w`` before its consumer; the DQ output."""
    base = (w.tensor if w.axis is None or sum(k[0] == w.tensor for k in w_dq) == 0 else f"{w.tensor}_axis{w.axis}") + suffix
    s_name, z_name, dq = f"{base}_scale", f"{base}_zero_point", f"{base}_dequantized"
    new_inits.append(numpy_helper.from_array(np.asarray(scale, np.float32), s_name))
    new_inits.append(numpy_helper.from_array(np.zeros(np.shape(scale), np.int8), z_name))
    axis_attr = {"axis": int(w.axis)} if w.axis is not None else {}
    if weights == "int8":
        q = f"{base}_int8"
        new_inits.append(numpy_helper.from_array(quantize_weight(g.const_value(w.tensor), scale, w.axis), q))
        nodes = [helper.make_node("DequantizeLinear", [q, s_name, z_name], [dq], name=f"{base}_DequantizeLinear", **axis_attr)]
    else:
        q = f"{base}_quantized"
        nodes = [
            helper.make_node("QuantizeLinear", [w.tensor, s_name, z_name], [q], name=f"{base}_QuantizeLinear", **axis_attr),
            helper.make_node("DequantizeLinear", [q, s_name, z_name], [dq], name=f"{base}_DequantizeLinear", **axis_attr),
        ]
    pending.setdefault(w.node, []).extend(nodes)
    return dq


def bias_and_input_scale(g: GraphIndex, plan: QuantPlan, table: CalibrationTable, w: WeightSpec) -> tuple[np.ndarray | None, float | None]:
    """The constant bias of a Conv/ConvTranspose/Gemm and the scale of its quantized input."""
    node = g.by_name[w.node]
    if node.op_type not in ("Conv", "ConvTranspose", "Gemm") or len(node.input) < 3 or not node.input[2]:
        return None, None
    bias = g.const_value(node.input[2])
    act = next((a.tensor for a in plan.activations if a.node == w.node and a.index == 0), None)
    if bias is None or act is None or act not in table.amax:
        return None, None
    return bias, float(activation_scale(table, act))


def _drop_unused_initializers(model: onnx.ModelProto) -> None:
    used = used_names(model.graph)
    inits = model.graph.initializer
    for i in reversed(range(len(inits))):  # in place: re-adding a tensor over 2 GB would serialise it
        if inits[i].name not in used:
            del inits[i]
