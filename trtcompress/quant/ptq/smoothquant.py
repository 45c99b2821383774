"""SmoothQuant-style migration (Xiao et al., 2023) of activation outliers into the weights.

A transformer's LayerNorm output has a few channels far larger than the rest; one per-tensor int8
scale then leaves the others a handful of levels. For a linear layer ``X W`` (MatMul or Gemm with
a constant ``W [K, N]``), ``X W = (X / s) (s W)`` for any positive per-input-channel ``s``. With
``s_k = max|X_k|^alpha / max|W_k|^(1 - alpha)`` (``max|X_k|`` on the calibration data) the
activation's channels are evened at the weights' cost: ``alpha`` 0 leaves X, 1 moves all of its
spread into W. The division by ``s`` is folded into X's producer, so no op is added and TensorRT
sees ordinary Q/DQ: a LayerNormalization over the last axis (gamma and beta divided), or a linear
layer (its weight columns and bias divided). ``s`` is shared by every layer reading X (attention's
Q, K and V projections read one LayerNorm). Where X is also read by something else (a post-norm
BERT's LayerNorm output is the residual too) or comes from an op that cannot take the scale, the
division is one Mul by a constant [K] vector on the quantized layers' side only (``mul_fallback``;
TensorRT runs it as a pointwise op fused into the QuantizeLinear that follows it).
"""
from __future__ import annotations

import dataclasses
from typing import Any, Iterable, Mapping

import numpy as np
import onnx_ir as ir

from ...errors import ConfigError
from ...graph._util import add_initializer, const_array, int_attr, single_use
from .feeds import limited

__all__ = ["SmoothQuantConfig", "smooth_quant"]


@dataclasses.dataclass(frozen=True)
class SmoothQuantConfig:
    """``alpha``: migration strength in [0, 1]; ``samples``: calibration samples for max|X|;
    ``threads``: ONNX Runtime intra-op threads (0: its default)."""

    alpha: float = 0.5
    samples: int | None = 256
    threads: int = 0
    mul_fallback: bool = True

    def __post_init__(self) -> None:
        if not 0.0 <= self.alpha <= 1.0:
            raise ConfigError(f"smoothquant alpha must be in [0, 1], got {self.alpha}")
        if self.samples is not None and self.samples < 1:
            raise ConfigError(f"smoothquant samples must be at least 1, got {self.samples}")


def _weight_rows(node: ir.Node) -> tuple[np.ndarray, bool] | None:
    """A linear layer's constant weight as [K, N] (input channels first), and whether it is
    stored transposed (Gemm transB=1)."""
    if node.op_type not in ("MatMul", "Gemm") or len(node.inputs) < 2:
        return None
    w = const_array(node.inputs[1])
    if w is None or w.ndim != 2 or w.dtype != np.float32:
        return None
    if node.op_type == "Gemm":
        if int_attr(node, "transA", 0):
            return None
        return (w.T, True) if int_attr(node, "transB", 0) else (w, False)
    return w, False


@dataclasses.dataclass
class _Group:
    x: ir.Value
    layers: list[ir.Node]
    producer: ir.Node | None  # LayerNormalization, Gemm, or the Add of a MatMul's bias
    kind: str  # "layernorm", "linear", or "mul" (a Mul inserted before the layers)


def _producer(x: ir.Value) -> tuple[ir.Node, str] | None:
    p = x.producer()
    if p is None or p.domain not in ("", "ai.onnx"):
        return None
    if p.op_type == "LayerNormalization" and p.outputs[0] is x and not any(o.uses() or o.is_graph_output() for o in p.outputs[1:]):
        rank = p.inputs[0].shape.rank() if p.inputs[0].shape is not None else None
        axis = int_attr(p, "axis", -1)
        last = axis == -1 or (rank is not None and axis == rank - 1)
        if last and const_array(p.inputs[1]) is not None and (len(p.inputs) < 3 or p.inputs[2] is None or const_array(p.inputs[2]) is not None):
            return p, "layernorm"
        return None
    if p.op_type == "Gemm" and _weight_rows(p) is not None and (len(p.inputs) < 3 or p.inputs[2] is None or const_array(p.inputs[2]) is not None):
        return p, "linear"
    if p.op_type == "Add":
        for k in (0, 1):
            mm = p.inputs[k].producer() if p.inputs[k] is not None else None
            if mm is not None and mm.op_type == "MatMul" and _weight_rows(mm) is not None and single_use(p.inputs[k]) and const_array(p.inputs[1 - k]) is not None:
                return p, "linear"
    return None


def _groups(graph: ir.Graph, layers: set[str], skipped: dict[str, str], mul_fallback: bool) -> list[_Group]:
    by_x: dict[int, _Group] = {}
    for node in graph:
        if node.name not in layers or _weight_rows(node) is None or node.inputs[0] is None:
            continue
        x = node.inputs[0]
        if id(x) in by_x:
            continue
        readers = [r for r in x.consumers() if r.op_type not in ("Shape", "Size")]  # these read no values
        linear = [r for r in readers if r.name in layers and _weight_rows(r) is not None and r.inputs[0] is x and r.inputs[1] is not x]
        if x.is_graph_output() or len(linear) < len(readers):
            why = "its input is also read by something other than a quantized linear layer"
        else:
            found = _producer(x)
            if found is not None:
                by_x[id(x)] = _Group(x, readers, *found)
                continue
            p = x.producer()
            why = f"input produced by {p.op_type if p is not None else 'the graph input'}, which cannot absorb a per-channel scale"
        if mul_fallback:
            by_x[id(x)] = _Group(x, linear, None, "mul")
        else:
            skipped[node.name] = why
    return list(by_x.values())


def _measure(model: ir.Model, groups: list[_Group], feeds: Iterable[Mapping[str, np.ndarray]], config: SmoothQuantConfig) -> tuple[list[np.ndarray], int]:
    """max |X| per last-axis channel of each group's X on the data (one ONNX Runtime pass)."""
    from ...sessions import SessionConfig, open_session

    copy = ir.serde.deserialize_model(ir.serde.serialize_model(model))
    values = {v.name: v for n in copy.graph for v in n.outputs}
    opset = copy.opset_imports.get("", 13)
    names = []
    for i, g in enumerate(groups):
        x = values[g.x.name]
        # rows of the last axis, whatever the rank (exporters such as paddle2onnx leave ranks unknown)
        channels = _weight_rows(g.layers[0])[0].shape[0]
        absx = ir.Node("", "Abs", [x], name=f"smoothquant_abs_{i}")
        rows = ir.Node("", "Reshape", [absx.outputs[0], add_initializer(copy.graph, np.array([-1, channels], np.int64), f"smoothquant_rows_{i}")], name=f"smoothquant_rows_{i}")
        copy.graph.append(absx)
        copy.graph.append(rows)
        if opset >= 18:
            red = ir.Node("", "ReduceMax", [rows.outputs[0], add_initializer(copy.graph, np.array([0], np.int64), f"smoothquant_axes_{i}")], attributes=[ir.AttrInt64("keepdims", 0)], name=f"smoothquant_max_{i}")
        else:
            red = ir.Node("", "ReduceMax", [rows.outputs[0]], attributes=[ir.AttrInt64s("axes", [0]), ir.AttrInt64("keepdims", 0)], name=f"smoothquant_max_{i}")
        copy.graph.append(red)
        red.outputs[0].name = f"smoothquant_out_{i}"
        red.outputs[0].type = ir.TensorType(ir.DataType.FLOAT)
        copy.graph.outputs.append(red.outputs[0])
        names.append(red.outputs[0].name)
    session = open_session(ir.serde.serialize_model(copy), SessionConfig(threads=config.threads))
    inputs = {i.name for i in session.get_inputs()}
    amax: list[np.ndarray] = [np.zeros(0)] * len(groups)
    seen = 0
    for n, feed in limited(feeds, config.samples):
        for i, o in enumerate(session.run(names, {k: v for k, v in feed.items() if k in inputs})):
            amax[i] = o if not amax[i].size else np.maximum(amax[i], o)
        seen += n
    if not seen:
        raise ConfigError("smoothquant got no calibration samples; give calibration data (--calib)")
    return amax, seen


def smooth_quant(model: ir.Model, layers: set[str], feeds: Iterable[Mapping[str, np.ndarray]], config: SmoothQuantConfig = SmoothQuantConfig()) -> dict[str, Any]:
    """Migrate activation ranges into the weights of the linear layers named in ``layers``, in
    place; the float function is unchanged. Returns the report: per activation, its producer,
    the layers reading it and the channel-range spread (max/min) of X and W before and after."""
    skipped: dict[str, str] = {}
    groups = _groups(model.graph, layers, skipped, config.mul_fallback)
    if not groups:
        return {"activations": [], "skipped": skipped, "samples": 0}
    amax_x, seen = _measure(model, groups, feeds, config)
    rows = []
    for g, ax in zip(groups, amax_x):
        ws = [_weight_rows(n) for n in g.layers]
        aw = np.max([np.abs(w).max(axis=1) for w, _ in ws], axis=0)
        ax = ax.astype(np.float64)
        ok = (ax > 0) & (aw > 0)
        s = np.ones_like(ax)
        s[ok] = ax[ok] ** config.alpha / aw[ok].astype(np.float64) ** (1 - config.alpha)
        s = np.clip(s, 1e-5, 1e5)
        for node, (w, transposed) in zip(g.layers, ws):
            new = (w * s[:, None]).astype(np.float32)
            _replace(model.graph, node, 1, new.T if transposed else new, "smooth")
        _divide_producer(model.graph, g, s)
        rows.append({"activation": g.x.name, "producer": g.producer.name if g.producer is not None else "Mul inserted", "fold": g.kind, "layers": [n.name for n in g.layers],
                     "x_range_spread": [_spread(ax), _spread(ax / s)], "w_range_spread": [_spread(aw), _spread(aw * s)],
                     "scale_min": float(s.min()), "scale_max": float(s.max())})
    return {"activations": rows, "skipped": skipped, "samples": seen, "alpha": config.alpha}


def _spread(r: np.ndarray) -> float:
    r = r[r > 0]
    return round(float(r.max() / r.min()), 3) if r.size else 1.0


def _replace(graph: ir.Graph, node: ir.Node, index: int, array: np.ndarray, tag: str) -> None:
    old = node.inputs[index]
    node.replace_input_with(index, add_initializer(graph, array, f"{old.name}_{tag}"))
    if not old.uses() and not old.is_graph_output() and old.name in graph.initializers:
        graph.initializers.pop(old.name)


def _divide_producer(graph: ir.Graph, g: _Group, s: np.ndarray) -> None:
    p = g.producer
    if g.kind == "mul":
        inv = add_initializer(graph, (1.0 / s).astype(np.float32), f"{g.x.name}_smooth_inv")
        mul = ir.Node("", "Mul", [g.x, inv], name=f"{g.x.name}_smooth")
        mul.outputs[0].name = f"{g.x.name}_smoothed"
        mul.outputs[0].type, mul.outputs[0].shape = g.x.type, g.x.shape
        producer = g.x.producer()
        if producer is not None:
            graph.insert_after(producer, mul)
        else:
            graph.insert_before(next(iter(graph)), mul)
        for layer in g.layers:
            layer.replace_input_with(0, mul.outputs[0])
        return
    if g.kind == "layernorm":
        for i in (1, 2):
            if len(p.inputs) > i and p.inputs[i] is not None:
                v = const_array(p.inputs[i]).astype(np.float64)
                _replace(graph, p, i, (v / s.reshape(v.shape) if v.size == s.size else v / s).astype(np.float32), "smooth")
        return
    if p.op_type == "Gemm":
        w, transposed = _weight_rows(p)  # [K_prev, K]: divide the output columns
        new = (w / s[None, :]).astype(np.float32)
        _replace(graph, p, 1, new.T if transposed else new, "smooth")
        if len(p.inputs) > 2 and p.inputs[2] is not None:
            c = const_array(p.inputs[2]).astype(np.float64)
            _replace(graph, p, 2, (c / s.reshape(c.shape) if c.size == s.size else c / s).astype(np.float32), "smooth")
        return
    k = next(k for k in (0, 1) if p.inputs[k].producer() is not None and p.inputs[k].producer().op_type == "MatMul")
    mm = p.inputs[k].producer()
    w, _ = _weight_rows(mm)
    _replace(graph, mm, 1, (w / s[None, :]).astype(np.float32), "smooth")
    b = const_array(p.inputs[1 - k]).astype(np.float64)
    _replace(graph, p, 1 - k, (b / s.reshape(b.shape) if b.size == s.size else b / s).astype(np.float32), "smooth")
