"""Cross-layer equalization (Nagel et al., 2019, "Data-Free Quantization"), as an onnx-ir pass.

For a pair ``conv1 -> act -> conv2`` (Conv or Gemm, constant weights) whose activation commutes
with a positive per-channel scale (``act(x / s) = act(x) / s``), dividing conv1's output channel
``i`` (weights and bias) by ``s_i`` and multiplying conv2's weights reading input channel ``i`` by
``s_i`` leaves the function unchanged. ``s_i = sqrt(r1_i / r2_i)`` (``r1_i``: max |w| of conv1's
output channel ``i``, ``r2_i``: of conv2's weights reading it) makes both ranges
``sqrt(r1_i * r2_i)``: the per-channel weight ranges of both layers become even, which is what a
per-tensor scale (and a per-tensor activation range) needs. Chains (A -> B -> C) couple pairs
through B, so the pairs are equalized in turn until the scales settle.

Which activations pass: Relu, LeakyRelu, PRelu, Clip(0, no max), MaxPool and nothing (identity),
up to ``max_between`` of them. ReLU6 (Clip(0, 6)) does not: ``clip(x / s, 0, 6)`` is
``clip(x, 0, 6 s) / s``, which differs from ``clip(x, 0, 6) / s`` wherever one of the two bounds
is reached, so equalizing through it would change the float model. Such pairs are left alone and
listed (``skipped``); a per-channel bound would need another op after every conv (a Min with a
[C, 1, 1] constant), which neither TensorRT's Conv+ReLU fusion nor the CPU form's uint8 clip keeps.
"""
from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import onnx_ir as ir

from ...errors import ConfigError
from ...graph._util import add_initializer, const_array, int_attr, single_use

__all__ = ["CleConfig", "CrossLayerEqualizationPass"]

_LAYERS = ("Conv", "Gemm")
_HOMOGENEOUS = ("Relu", "LeakyRelu", "PRelu", "MaxPool", "Clip")


@dataclasses.dataclass(frozen=True)
class CleConfig:
    """``iterations``: rounds over all pairs (a chain needs several to settle); ``tolerance``: stop
    once every scale of a round is within this of 1; ``max_scale``: scales are clamped to
    [1/max_scale, max_scale] (a channel of near-zero weights would otherwise get an extreme one);
    ``max_between``: positive-homogeneous ops allowed between the two layers."""

    iterations: int = 20
    tolerance: float = 1e-3
    max_scale: float = 1e4
    max_between: int = 2

    def __post_init__(self) -> None:
        if self.iterations < 1:
            raise ConfigError(f"CLE iterations must be at least 1, got {self.iterations}")
        if not self.tolerance > 0:
            raise ConfigError(f"CLE tolerance must be > 0, got {self.tolerance}")
        if not self.max_scale > 1:
            raise ConfigError(f"CLE max_scale must be > 1, got {self.max_scale}")


@dataclasses.dataclass
class _Layer:
    """A layer's weight viewed as [groups, out per group, in per group, rest] and its bias."""

    node: ir.Node
    w: np.ndarray  # the stored layout
    b: np.ndarray | None
    transpose: bool  # Gemm with transB=0: stored [in, out]

    def grouped(self) -> np.ndarray:
        w = self.w.T if self.transpose else self.w
        g = int_attr(self.node, "group", 1) if self.node.op_type == "Conv" else 1
        return w.reshape(g, w.shape[0] // g, w.shape[1], -1)

    def set_grouped(self, v: np.ndarray) -> None:
        shape = self.w.T.shape if self.transpose else self.w.shape
        w = v.reshape(shape)
        self.w = w.T if self.transpose else w

    def out_ranges(self) -> np.ndarray:
        return np.abs(self.grouped()).max(axis=(2, 3)).reshape(-1)

    def in_ranges(self) -> np.ndarray:
        return np.abs(self.grouped()).max(axis=(1, 3)).reshape(-1)

    def channels_in(self) -> int:
        g = self.grouped()
        return g.shape[0] * g.shape[2]


def _spread(r: np.ndarray) -> float:
    r = r[r > 0]
    return float(r.max() / r.min()) if r.size else 1.0


def _passes_scale(node: ir.Node) -> str | None:
    """None when ``act(x / s) == act(x) / s`` for any positive per-channel ``s``, else why not."""
    if node.domain not in ("", "ai.onnx") or node.op_type not in _HOMOGENEOUS:
        return f"{node.op_type} between the layers"
    if node.op_type == "Clip":
        lo = _clip_value(node, 1, "min")
        hi = _clip_value(node, 2, "max")
        if lo is None or lo != 0.0:
            return "Clip whose lower bound is not 0"
        if hi is not None and np.isfinite(hi):
            return f"Clip(0, {hi:g}) (ReLU6-style) is not positive-homogeneous"
    if node.op_type == "MaxPool" and len(node.outputs) > 1 and node.outputs[1].uses():
        return "MaxPool with indices"
    return None


def _clip_value(node: ir.Node, index: int, attr: str) -> float | None:
    if attr in node.attributes:
        return node.attributes[attr].as_float()
    if len(node.inputs) > index and node.inputs[index] is not None:
        v = const_array(node.inputs[index])
        return float(v) if v is not None and v.size == 1 else np.nan
    return None


def _layer(node: ir.Node) -> _Layer | None:
    if node.op_type not in _LAYERS or node.domain not in ("", "ai.onnx") or len(node.inputs) < 2:
        return None
    w = const_array(node.inputs[1])
    if w is None or w.dtype != np.float32:
        return None
    transpose = False
    if node.op_type == "Gemm":
        if w.ndim != 2 or int_attr(node, "transA", 0):
            return None
        transpose = not int_attr(node, "transB", 0)
    elif w.ndim < 3:
        return None
    b = None
    if len(node.inputs) > 2 and node.inputs[2] is not None:
        b = const_array(node.inputs[2])
        if b is None:
            return None
    return _Layer(node, w.copy(), None if b is None else b.copy(), transpose)


class CrossLayerEqualizationPass(ir.passes.InPlacePass):
    """Equalize every eligible pair in place. ``include``: the layer names that may change (None:
    all); ``self.pairs`` reports each equalized pair, ``self.skipped`` each pair left alone and why."""

    def __init__(self, config: CleConfig = CleConfig(), include: set[str] | None = None) -> None:
        super().__init__()
        self.config = config
        self.include = include
        self.pairs: list[dict[str, Any]] = []
        self.skipped: list[dict[str, str]] = []

    def _pairs(self, graph: ir.Graph) -> list[tuple[ir.Node, list[ir.Node], ir.Node]]:
        """(first, ops between, second) for each layer whose input comes, through single-use
        positive-homogeneous ops only, from another layer; a pair blocked by one op is listed
        in ``self.skipped``."""
        found = []
        for second in graph:
            if second.op_type not in _LAYERS or not second.inputs or second.inputs[0] is None:
                continue
            between: list[ir.Node] = []
            x = second.inputs[0]
            while (p := x.producer()) is not None and single_use(x) and p.op_type not in _LAYERS:
                why = _passes_scale(p) or ("too many ops between the layers" if len(between) >= self.config.max_between else None)
                if why is not None:
                    src = p.inputs[0] if p.inputs else None
                    first = src.producer() if src is not None else None
                    if first is not None and first.op_type in _LAYERS and single_use(src):
                        self.skipped.append({"first": first.name, "second": second.name, "why": why})
                    p = None
                    break
                between.insert(0, p)
                x = p.inputs[0]
            if p is None or p.op_type not in _LAYERS or not single_use(x):
                continue
            if self.include is not None and not {p.name, second.name} <= self.include:
                continue
            found.append((p, between, second))
        return found

    def call(self, model: ir.Model) -> ir.passes.PassResult:
        self.pairs, self.skipped = [], []
        graph = model.graph
        layers: dict[str, _Layer] = {}
        pairs = []
        for first, between, second in self._pairs(graph):
            a = layers.get(first.name) or _layer(first)
            c = layers.get(second.name) or _layer(second)
            if a is None or c is None:
                continue
            if a.out_ranges().size != c.channels_in():
                continue
            if any(n.op_type == "PRelu" and const_array(n.inputs[1]) is None for n in between):
                continue
            layers[first.name], layers[second.name] = a, c
            pairs.append((a, between, c))
        if not pairs:
            return ir.passes.PassResult(model, modified=False)
        before = [(_spread(a.out_ranges()), _spread(c.in_ranges())) for a, _, c in pairs]
        total = [np.ones(a.out_ranges().size) for a, _, _ in pairs]
        lo, hi = 1.0 / self.config.max_scale, self.config.max_scale
        for _ in range(self.config.iterations):
            worst = 0.0
            for k, (a, _, c) in enumerate(pairs):
                r1, r2 = a.out_ranges(), c.in_ranges()
                ok = (r1 > 0) & (r2 > 0)
                s = np.ones_like(r1, dtype=np.float64)
                s[ok] = np.sqrt(r1[ok] / r2[ok])
                s = np.clip(s, lo, hi)
                _scale_out(a, 1.0 / s)
                _scale_in(c, s)
                total[k] *= s
                worst = max(worst, float(np.max(np.abs(np.log(s)))))
            if worst < np.log1p(self.config.tolerance):
                break
        for layer in layers.values():
            _store(graph, layer)
        for (a, between, c), (s1, s2), s in zip(pairs, before, total):
            self.pairs.append({
                "first": a.node.name, "second": c.node.name, "between": [n.op_type for n in between], "channels": int(s.size),
                "scale_min": float(s.min()), "scale_max": float(s.max()),
                "first_out_range_spread": [round(s1, 3), round(_spread(a.out_ranges()), 3)],
                "second_in_range_spread": [round(s2, 3), round(_spread(c.in_ranges()), 3)],
            })
        return ir.passes.PassResult(model, modified=True)


def _scale_out(layer: _Layer, f: np.ndarray) -> None:
    """Multiply output channel i (weights and bias) by f[i]."""
    g = layer.grouped()
    layer.set_grouped(g * f.reshape(g.shape[0], g.shape[1], 1, 1).astype(g.dtype))
    if layer.b is not None:
        layer.b = (layer.b * f.reshape(layer.b.shape) if layer.b.size == f.size else layer.b * f).astype(layer.b.dtype)


def _scale_in(layer: _Layer, f: np.ndarray) -> None:
    """Multiply the weights reading input channel i by f[i]."""
    g = layer.grouped()
    layer.set_grouped(g * f.reshape(g.shape[0], 1, g.shape[2], 1).astype(g.dtype))


def _store(graph: ir.Graph, layer: _Layer) -> None:
    node = layer.node
    old = [node.inputs[1]] + ([node.inputs[2]] if len(node.inputs) > 2 and node.inputs[2] is not None else [])
    node.replace_input_with(1, add_initializer(graph, layer.w.astype(np.float32), f"{node.inputs[1].name}_cle"))
    if layer.b is not None:
        node.replace_input_with(2, add_initializer(graph, layer.b.astype(np.float32).reshape(-1) if layer.b.ndim <= 1 else layer.b.astype(np.float32), f"{old[1].name}_cle"))
    for v in old:
        if not v.uses() and not v.is_graph_output() and v.name in graph.initializers:
            graph.initializers.pop(v.name)
