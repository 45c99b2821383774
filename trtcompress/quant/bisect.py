"""Find the quantized layers that make a Q/DQ model diverge from FP32, by bisection over the layers.

TensorRT 11 builds only strongly typed networks: precision comes from the ONNX, and there is no
per-layer precision control to debug with (Polygraphy's per-layer precision debugging relies on the
APIs it removed). So the search edits the ONNX instead: a layer is made float by rewiring its
dequantized inputs (activation and weight) to the float tensors their QuantizeLinear read, and each
candidate model runs through the runner interface (ONNX Runtime on the CPU; TensorRT where present)
and is compared with the FP32 outputs by :class:`~trtcompress.comparison.OutputStats`.

Algorithm (adaptive group testing over the layers in graph order, assuming that making more layers
float does not make the model worse): ``passes(S)`` runs the model with the layers in S float and
checks the metric against the threshold. With F the culprits found so far and C the candidates:
binary-search the shortest prefix C[:k] with ``passes(F + C[:k])``; C[k-1] is a culprit; keep
C[:k-1] as the candidates and repeat until ``passes(F)``. A last pass drops any culprit the others
make unnecessary. Cost for d culprits among n layers: 2 runs (all quantized, all float), at most
d * (ceil(log2 n) + 1) runs for the search, d for the last pass and d for the per-layer metrics:
a single bad layer among 16 costs about 9 runs, against 16 for trying each layer alone.
"""
from __future__ import annotations

import dataclasses
import math
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Sequence

import numpy as np
import onnx

from ..comparison import OutputStats, exact_qdq_options
from ..config import Config
from ..errors import ConfigError, DataError, ModelError
from ..model_io import load_model, save_model
from ..runners import RunnerOptions, make_runner
from ._ir import View, add_tensor, as_ir, attr, const_value, drop_unused_initializers, is_const, name_main_nodes, to_proto

if TYPE_CHECKING:
    import onnx_ir as ir

__all__ = ["DebugConfig", "DebugResult", "LayerFinding", "quantized_layers", "make_float", "find_divergent_layers", "METRICS"]

METRICS = ("cosine", "top1")


@dataclasses.dataclass(frozen=True)
class DebugConfig(Config):
    """``metric``: the worst output's mean cosine similarity to FP32, or its top-1 agreement
    (classifier outputs); the Q/DQ model diverges when it is below ``threshold``. ``max_runs`` bounds
    the model runs of the search."""

    metric: str = "cosine"
    threshold: float = 0.99
    backend: str = "onnxrt"
    runner: RunnerOptions = RunnerOptions()
    max_runs: int = 200

    def validate(self) -> None:
        if self.metric not in METRICS:
            raise ConfigError(f"metric must be one of {', '.join(METRICS)}, got {self.metric!r}")
        if not -1.0 <= self.threshold <= 1.0:
            raise ConfigError(f"threshold must be within [-1, 1] (top-1 as a fraction, e.g. 0.9), got {self.threshold}")
        if self.max_runs < 2:
            raise ConfigError("max_runs must be at least 2")


@dataclasses.dataclass
class LayerFinding:
    node: str
    op: str
    metric_alone_float: float  # the metric with only this layer float


@dataclasses.dataclass
class DebugResult:
    metric: str
    threshold: float
    quantized_layers: int
    metric_quantized: float  # the Q/DQ model as given
    metric_all_float: float | None  # every Q/DQ removed
    metric_fixed: float | None  # the culprits float
    layers: list[LayerFinding]
    runs: int

    @property
    def diverges(self) -> bool:
        return self.metric_quantized < self.threshold

    def to_dict(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "diverges": self.diverges}


# -- the Q/DQ model's layers -----------------------------------------------------------------------


def quantized_layers(model: "onnx.ModelProto | ir.Model") -> dict[str, list[int]]:
    """Node name -> indices of its inputs that come from a DequantizeLinear, in graph order
    (unnamed nodes get names in place, a ModelProto's main-graph nodes the same ones)."""
    m = as_ir(model)
    name_main_nodes(m, model if isinstance(model, onnx.ModelProto) else None)
    out: dict[str, list[int]] = {}
    for n in m.graph:
        if n.op_type in ("QuantizeLinear", "DequantizeLinear"):
            continue
        idx = [i for i, v in enumerate(n.inputs) if v is not None and (p := v.producer()) is not None and p.op_type == "DequantizeLinear"]
        if idx:
            out[n.name] = idx
    return out


def make_float(model: onnx.ModelProto, layers: Sequence[str], fp32: onnx.ModelProto | None = None) -> onnx.ModelProto:
    """A copy of ``model`` where ``layers`` read float inputs instead of their dequantized ones.

    An activation or float weight reads what its QuantizeLinear read. An int8 weight stored with a DQ
    only takes the float weight of the same node in ``fp32`` (the quantizer keeps node names), or
    its dequantized value when there is none. Q/DQ nodes nobody reads any more are removed."""
    m = as_ir(model)  # tensors wrapped: ``model`` itself is not changed
    inputs = quantized_layers(m)
    g = View(m)
    fg = View(as_ir(fp32)) if fp32 is not None else None
    for name in layers:
        if name not in inputs:
            raise ModelError(f"{name!r} is not a quantized layer of the Q/DQ model")
        node = g.by_name[name]
        for i in inputs[name]:
            dq = node.inputs[i].producer()
            q = dq.inputs[0].producer()
            if q is not None and q.op_type == "QuantizeLinear":
                node.replace_input_with(i, q.inputs[0])
                continue
            node.replace_input_with(i, _float_weight(m.graph, fg, node, i, dq))
    _drop_dead(m.graph)
    return to_proto(m, like=model)


def _float_weight(graph: "ir.Graph", fg: View | None, node: "ir.Node", i: int, dq: "ir.Node") -> "ir.Value":
    ref = fg.by_name.get(node.name) if fg is not None else None
    if ref is not None and ref.op_type == node.op_type and i < len(ref.inputs) and is_const(ref.inputs[i]):
        value = const_value(ref.inputs[i])
    else:  # no FP32 twin: the dequantized weight (its quantization stays)
        q = const_value(dq.inputs[0]).astype(np.float32)
        scale = const_value(dq.inputs[1]).astype(np.float32)
        zp = const_value(dq.inputs[2]).astype(np.float32) if len(dq.inputs) > 2 and dq.inputs[2] is not None else np.zeros_like(scale)
        if scale.ndim == 1 and q.ndim > 1:
            axis = attr(dq, "axis", 1) % q.ndim
            shape = [1] * q.ndim
            shape[axis] = -1
            scale, zp = scale.reshape(shape), zp.reshape(shape)
        value = (q - zp) * scale
    return add_tensor(graph, np.asarray(value, dtype=np.float32), f"{node.name}_input{i}_float")


def _drop_dead(graph: "ir.Graph") -> None:
    """Remove Q/DQ nodes whose outputs nobody reads, and initializers left unused."""
    while dead := [n for n in graph if n.op_type in ("QuantizeLinear", "DequantizeLinear") and not any(o.uses() or o.is_graph_output() for o in n.outputs)]:
        graph.remove(dead, safe=True)
    drop_unused_initializers(graph)


# -- the search ------------------------------------------------------------------------------------


class _Evaluator:
    """Runs candidate models on the feeds and scores them against the FP32 outputs."""

    def __init__(self, fp32_path: str, qdq: onnx.ModelProto, fp32: onnx.ModelProto, feeds: list[dict[str, np.ndarray]], config: DebugConfig, workdir: Path):
        self.qdq, self.fp32, self.feeds, self.config, self.workdir = qdq, fp32, feeds, config, workdir
        self.runs = 0
        self.cache: dict[frozenset[str], float] = {}
        with make_runner(fp32_path, config.backend, config.runner, name="fp32") as runner:
            self.base = [{k: np.array(v, copy=True) for k, v in runner.infer(f).items()} for f in feeds]

    def metric(self, floats: frozenset[str]) -> float:
        if floats in self.cache:
            return self.cache[floats]
        if self.runs >= self.config.max_runs:
            raise ModelError(f"the search needed more than {self.config.max_runs} model runs; raise max_runs (--max-runs) or use less data")
        path = self.workdir / f"candidate{self.runs}.onnx"
        save_model(make_float(self.qdq, sorted(floats), self.fp32), path, check=False)
        options = exact_qdq_options(path, self.config.runner) if self.config.backend == "onnxrt" else self.config.runner
        stats: dict[str, OutputStats] = {}
        with make_runner(path, self.config.backend, options, name=path.name) as runner:
            for feed, base in zip(self.feeds, self.base):
                got = runner.infer(feed)
                for name, ref in base.items():
                    if name in got:
                        stats.setdefault(name, OutputStats()).update(ref, np.asarray(got[name]), None, None)
        path.unlink()
        self.runs += 1
        value = self._score(stats)
        self.cache[floats] = value
        return value

    def _score(self, stats: dict[str, OutputStats]) -> float:
        if not stats:
            raise DataError("the Q/DQ model and the FP32 model share no outputs")
        values = []
        for name, s in stats.items():
            d = s.to_dict()
            v = d["cosine_mean"] if self.config.metric == "cosine" else d["top1_agreement"]
            if v is not None:
                values.append(v)
        if not values:
            raise ConfigError("no output is classifier-shaped ([N, C]) for the top1 metric; use metric cosine")
        return float(min(values))


def find_divergent_layers(
    fp32_path: str | Path,
    qdq_path: str | Path,
    feeds: Sequence[dict[str, np.ndarray]],
    config: DebugConfig | None = None,
    log: Callable[[str], None] | None = None,
) -> DebugResult:
    """The smallest set of quantized layers of ``qdq_path`` whose Q/DQ makes it diverge from ``fp32_path``."""
    config = config or DebugConfig()
    log = log or (lambda m: None)
    feeds = list(feeds)
    if not feeds:
        raise DataError("the data source yielded no inputs; check the data path and --limit")
    qdq, fp32 = load_model(qdq_path), load_model(fp32_path)
    layers = list(quantized_layers(qdq))
    if not layers:
        raise ModelError(f"{qdq_path} has no quantized layers (no node reads a DequantizeLinear output)")
    ops = {n.name: n.op_type for n in qdq.graph.node}
    t = config.threshold
    with tempfile.TemporaryDirectory(prefix="trtcompress-debug-") as tmp:
        ev = _Evaluator(str(fp32_path), qdq, fp32, feeds, config, Path(tmp))
        q_metric = ev.metric(frozenset())
        log(f"{len(layers)} quantized layers; {config.metric} of the Q/DQ model {q_metric:.6f} (threshold {t})")
        if q_metric >= t:
            return DebugResult(config.metric, t, len(layers), q_metric, None, None, [], ev.runs)
        all_float = ev.metric(frozenset(layers))
        if all_float < t:
            raise ModelError(
                f"with every Q/DQ removed the model still has {config.metric} {all_float:.6f} < {t} against FP32: "
                "the difference is not quantization (check that the two models are the same network)"
            )
        found = _search(layers, lambda s: ev.metric(frozenset(s)) >= t, log)
        fixed = ev.metric(frozenset(found))
        findings = [LayerFinding(n, ops.get(n, ""), ev.metric(frozenset([n]))) for n in found]
    return DebugResult(config.metric, t, len(layers), q_metric, all_float, fixed, findings, ev.runs)


def _search(layers: list[str], passes: Callable[[list[str]], bool], log: Callable[[str], None]) -> list[str]:
    found: list[str] = []
    cands = list(layers)
    while cands and not passes(found):
        lo, hi = 1, len(cands)  # passes(found + cands[:hi]) holds (monotonicity: all float passes)
        while lo < hi:
            mid = (lo + hi) // 2
            if passes(found + cands[:mid]):
                hi = mid
            else:
                lo = mid + 1
        culprit = cands[hi - 1]
        log(f"culprit: {culprit} (after {math.ceil(math.log2(max(len(cands), 2)))} bisection steps over {len(cands)} layers)")
        found.append(culprit)
        cands = cands[: hi - 1]
    for name in list(found):  # drop culprits the others make unnecessary
        rest = [n for n in found if n != name]
        if rest and passes(rest):
            found = rest
    order = {n: i for i, n in enumerate(layers)}
    return sorted(found, key=order.__getitem__)
