"""Empirical bias correction (Nagel et al., 2019; as in Qualcomm's AIMET), on calibration data.

Rounding a layer's weights to the INT8 grid moves the mean of its output: ``E[W x] - E[W_q x]``
per output channel is not zero, and the shifts add up through a network (a depthwise conv's few
weights per channel are the worst case). That shift, measured on the calibration data's float
activations ``x`` for the weight grid the written form actually uses (``W_q`` = dequantized
``quantize(W)``), is added to the layer's bias, so the quantized layer's output mean is the float
layer's again. The float model itself changes by this (it is the quantized model that is
corrected); the Q/DQ form and the CPU form then read the corrected bias unchanged.

How: one ONNX Runtime pass over the data on a copy of the model where each layer gets a twin
reading the same input with the weight error ``W - W_q`` and no bias, reduced to its per-channel
mean, so the activations themselves are never held (EfficientNet-Lite0: 49 twins, one pass).
Conv and Gemm take the correction in their bias (one is added where there is none); a MatMul in
the bias Add that follows it (a transformer's linear layer); a MatMul without one is left alone.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Iterable, Mapping

import numpy as np
import onnx_ir as ir

from ...errors import ConfigError
from ...graph._util import add_initializer, const_array, single_use
from ..scales import quantize_weight, scales_from_amax, weight_amax
from .feeds import limited

__all__ = ["BiasCorrectionConfig", "WeightGrid", "bias_correct"]


@dataclasses.dataclass(frozen=True)
class BiasCorrectionConfig:
    """``samples``: calibration samples measured (None: all the data gives); ``threads``: ONNX
    Runtime intra-op threads (0: its default)."""

    samples: int | None = 256
    threads: int = 0

    def __post_init__(self) -> None:
        if self.samples is not None and self.samples < 1:
            raise ConfigError(f"bias correction samples must be at least 1, got {self.samples}")


@dataclasses.dataclass(frozen=True)
class WeightGrid:
    """How a layer's weight is quantized in the written form: symmetric int8 on ``axis`` (None:
    per tensor) with the max-abs scale times ``step`` (2: the CPU form's int7 weights)."""

    axis: int | None
    step: float = 1.0

    def dequantized(self, w: np.ndarray) -> np.ndarray:
        scale = scales_from_amax(weight_amax(w, self.axis)) * np.float32(self.step)
        q = quantize_weight(w, scale, self.axis).astype(np.float32)
        if self.axis is not None and np.ndim(scale) == 1:
            shape = [1] * w.ndim
            shape[self.axis % w.ndim] = -1
            scale = scale.reshape(shape)
        return q * scale


@dataclasses.dataclass
class _Target:
    node: ir.Node
    error: np.ndarray  # W - W_q
    channel_axis: int  # of the layer's output
    bias_owner: ir.Node  # where the correction goes: the layer or its bias Add
    bias_index: int | None  # input of bias_owner holding the bias (None: add one)
    divide: float  # Gemm's beta


def _targets(graph: ir.Graph, grids: Mapping[str, WeightGrid], skipped: dict[str, str]) -> list[_Target]:
    out = []
    for node in graph:
        grid = grids.get(node.name)
        if grid is None or node.op_type not in ("Conv", "Gemm", "MatMul") or len(node.inputs) < 2:
            continue
        w = const_array(node.inputs[1])
        if w is None or w.dtype != np.float32:
            skipped[node.name] = "no constant float32 weight"
            continue
        error = w - grid.dequantized(w)
        if node.op_type == "Conv":
            has = len(node.inputs) > 2 and node.inputs[2] is not None
            if has and const_array(node.inputs[2]) is None:
                skipped[node.name] = "bias is not a constant"
                continue
            out.append(_Target(node, error, 1, node, 2 if has else None, 1.0))
        elif node.op_type == "Gemm":
            has = len(node.inputs) > 2 and node.inputs[2] is not None
            c = const_array(node.inputs[2]) if has else None
            n = w.shape[0] if "transB" in node.attributes and node.attributes["transB"].as_int() else w.shape[1]
            if has and (c is None or c.size not in (1, n)):
                skipped[node.name] = "bias is not a constant per-column vector"
                continue
            beta = node.attributes["beta"].as_float() if "beta" in node.attributes else 1.0
            out.append(_Target(node, error, -1, node, 2 if has else None, beta if has else 1.0))
        else:
            y = node.outputs[0]
            add = next(iter(y.consumers()), None) if single_use(y) else None
            if add is None or add.op_type != "Add":
                skipped[node.name] = "MatMul without a bias Add to take the correction"
                continue
            k = 1 if add.inputs[0] is y else 0
            b = const_array(add.inputs[k])
            if b is None or b.size != w.shape[-1]:
                skipped[node.name] = "MatMul's Add is not a constant per-column bias"
                continue
            out.append(_Target(node, error, -1, add, k, 1.0))
    return out


def _measuring_model(model: ir.Model, targets: list[_Target]) -> tuple[ir.Model, list[str]]:
    """A copy of ``model`` with one output per target: the mean over every axis but the channel
    axis of the layer's op applied to its input with the weight error."""
    copy = ir.serde.deserialize_model(ir.serde.serialize_model(model))
    graph = copy.graph
    nodes = {n.name: n for n in graph}
    opset = copy.opset_imports.get("", 13)
    names = []
    for i, t in enumerate(targets):
        orig = nodes[t.node.name]
        w = add_initializer(graph, t.error, f"bias_correction_error_{i}")
        attrs = [a for a in orig.attributes.values() if a.name != "beta"]
        twin = ir.Node(orig.domain, orig.op_type, [orig.inputs[0], w], attributes=attrs, name=f"bias_correction_twin_{i}")
        graph.append(twin)
        y = twin.outputs[0]
        rank = orig.outputs[0].shape.rank() if orig.outputs[0].shape is not None else None
        if rank is None:
            rank = 2 if orig.op_type == "Gemm" else (len(t.error.shape) if orig.op_type == "Conv" else None)
        if rank is None:  # a MatMul of unknown rank (paddle2onnx exports): its columns as rows of [-1, N]
            shape = add_initializer(graph, np.array([-1, t.error.shape[-1]], np.int64), f"bias_correction_rows_{i}")
            rows = ir.Node("", "Reshape", [y, shape], name=f"bias_correction_rows_{i}")
            graph.append(rows)
            y, rank = rows.outputs[0], 2
        axes = [a for a in range(rank) if a != t.channel_axis % rank]
        if opset >= 18:
            ax = add_initializer(graph, np.array(axes, np.int64), f"bias_correction_axes_{i}")
            mean = ir.Node("", "ReduceMean", [y, ax], attributes=[ir.AttrInt64("keepdims", 0)], name=f"bias_correction_mean_{i}")
        else:
            mean = ir.Node("", "ReduceMean", [y], attributes=[ir.AttrInt64s("axes", axes), ir.AttrInt64("keepdims", 0)], name=f"bias_correction_mean_{i}")
        graph.append(mean)
        mean.outputs[0].name = f"bias_correction_out_{i}"
        mean.outputs[0].type = ir.TensorType(ir.DataType.FLOAT)
        graph.outputs.append(mean.outputs[0])
        names.append(mean.outputs[0].name)
    return copy, names


def bias_correct(model: ir.Model, grids: Mapping[str, WeightGrid], feeds: Iterable[Mapping[str, np.ndarray]], config: BiasCorrectionConfig = BiasCorrectionConfig()) -> dict[str, Any]:
    """Fold the mean output shift of each layer in ``grids`` (node name -> its weight grid) into
    its bias, in place; returns the report (per layer: mean |shift| over channels, max |shift|)."""
    from ...sessions import SessionConfig, open_session

    skipped: dict[str, str] = {}
    targets = _targets(model.graph, grids, skipped)
    if not targets:
        return {"layers": [], "skipped": skipped, "samples": 0}
    measuring, names = _measuring_model(model, targets)
    session = open_session(ir.serde.serialize_model(measuring), SessionConfig(threads=config.threads))
    inputs = {i.name for i in session.get_inputs()}
    sums: list[np.ndarray | None] = [None] * len(targets)
    seen = 0
    for n, feed in limited(feeds, config.samples):
        outs = session.run(names, {k: v for k, v in feed.items() if k in inputs})
        for i, o in enumerate(outs):
            o = np.asarray(o, np.float64) * n
            sums[i] = o if sums[i] is None else sums[i] + o
        seen += n
    if not seen:
        raise ConfigError("bias correction got no calibration samples; give calibration data (--calib)")
    rows = []
    for t, total in zip(targets, sums):
        shift = (total / seen).astype(np.float32)
        _add_to_bias(model.graph, t, shift / np.float32(t.divide))
        rows.append({"layer": t.node.name, "mean_abs_shift": float(np.mean(np.abs(shift))), "max_abs_shift": float(np.max(np.abs(shift)))})
    return {"layers": rows, "skipped": skipped, "samples": seen}


def _add_to_bias(graph: ir.Graph, t: _Target, shift: np.ndarray) -> None:
    owner = t.bias_owner
    if t.bias_index is None:
        b = add_initializer(graph, shift.astype(np.float32), f"{t.node.name}_bias_corrected")
        owner.resize_inputs(3)
        owner.replace_input_with(2, b)
        return
    old = owner.inputs[t.bias_index]
    current = const_array(old)
    new = (current.astype(np.float32) + shift.reshape(current.shape) if current.size == shift.size else current + shift).astype(current.dtype)
    owner.replace_input_with(t.bias_index, add_initializer(graph, new, f"{old.name}_corrected"))
    if not old.uses() and not old.is_graph_output() and old.name in graph.initializers:
        graph.initializers.pop(old.name)
