"""Per-layer quantization error on calibration data, and the accuracy-target fallback.

*Local* error isolates each layer: every quantized node gets a shadow copy that reads the FP32
activations through its own Q/DQ (and Q/DQ weights), so one ONNX Runtime pass measures every
layer's own error without the error of the layers before it. *Cumulative* error compares each
quantized node's output in the full INT8 model with FP32, which shows where the model diverges.
Both are SQNR in dB (higher is better: 10*log10(signal power / error power)).
"""
from __future__ import annotations

import dataclasses
import math
from typing import Any, Callable, Iterable, Mapping

import numpy as np
import onnx

from ..errors import ConfigError
from .placement import QuantInput, QuantPlan, WeightSpec
from .qdq_trt import write_trt_qdq
from .table import CalibrationTable

__all__ = ["LayerError", "Sensitivity", "analyse", "layer_errors", "AccuracyTarget", "parse_accuracy_target", "fallback_to_target", "sqnr_db"]

Feed = Mapping[str, np.ndarray]
_SHADOW = "__trtcompress_shadow"


@dataclasses.dataclass
class LayerError:
    node: str
    op: str
    local_sqnr_db: float
    cumulative_sqnr_db: float

    def to_dict(self) -> dict[str, Any]:
        return {k: (round(v, 2) if isinstance(v, float) and math.isfinite(v) else v) for k, v in dataclasses.asdict(self).items()}


class _Acc:
    """Streaming signal and error power, so the data set size does not bound memory."""

    def __init__(self) -> None:
        self.signal = 0.0
        self.error = 0.0

    def add(self, ref: np.ndarray, got: np.ndarray) -> None:
        # float32 dot products (BLAS) instead of float64 temporaries: several times faster on
        # large activations, and far more precise than the dB this feeds
        r = np.ascontiguousarray(ref, dtype=np.float32).ravel()
        d = r - np.ascontiguousarray(got, dtype=np.float32).ravel()
        self.signal += float(np.dot(r, r))
        self.error += float(np.dot(d, d))

    def db(self) -> float:
        return sqnr_db(self.signal, self.error)


def sqnr_db(signal: float, error: float) -> float:
    if error <= 0:
        return float("inf")
    if signal <= 0:
        return float("-inf")
    return 10.0 * math.log10(signal / error)


def _session(model: onnx.ModelProto, threads: int = 0):
    import onnxruntime as ort

    so = ort.SessionOptions()
    if threads:
        so.intra_op_num_threads = threads
    so.log_severity_level = 3
    return ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"])


def _with_outputs(model: onnx.ModelProto, names: Iterable[str]) -> onnx.ModelProto:
    m = onnx.ModelProto()
    m.CopyFrom(model)
    have = {o.name for o in m.graph.output}
    for n in names:
        if n not in have:
            m.graph.output.append(onnx.ValueInfoProto(name=n))
            have.add(n)
    return m


Setting = tuple[QuantPlan, CalibrationTable]


def _shadow_model(model: onnx.ModelProto, settings: list[Setting]) -> tuple[onnx.ModelProto, list[dict[str, tuple[str, str]]]]:
    """FP32 model plus, per (plan, table) setting and per quantized node of its plan, a Q/DQ'd
    shadow reading the FP32 activations: one pass measures every layer under every setting."""
    m = onnx.ModelProto()
    m.CopyFrom(model)
    by_name = {n.name: n for n in m.graph.node}
    pairs: list[dict[str, tuple[str, str]]] = []
    for k, (plan, table) in enumerate(settings):
        tag = f"{_SHADOW}{k}"
        shadows, own = [], {}
        for name in plan.quantized_nodes:
            n = by_name[name]
            s = onnx.NodeProto()
            s.CopyFrom(n)
            s.name = name + tag
            del s.output[:]
            s.output.extend([o + tag if o else "" for o in n.output])
            shadows.append(s)
            own[name] = (n.output[0], s.output[0])
        m.graph.node.extend(shadows)  # shadows read only existing tensors: appending keeps the order valid
        shadow_plan = QuantPlan(
            [QuantInput(a.node + tag, a.index, a.tensor) for a in plan.activations],
            [WeightSpec(w.node + tag, w.index, w.tensor, w.axis) for w in plan.weights],
            [n + tag for n in plan.quantized_nodes],
            {},
            {},
        )
        m = write_trt_qdq(m, shadow_plan, table, suffix=tag)
        pairs.append(own)
    return _with_outputs(m, [t for own in pairs for pair in own.values() for t in pair]), pairs


def _local_sqnr(model, settings: list[Setting], feeds, threads) -> list[dict[str, float]]:
    """SQNR of every quantized node alone (float inputs, quantized arithmetic), per setting."""
    if not any(plan.quantized_nodes for plan, _ in settings):
        return [{} for _ in settings]
    shadow, pairs = _shadow_model(model, settings)
    sess = _session(shadow, threads)
    names = [o.name for o in sess.get_outputs()]
    acc = [{n: _Acc() for n in own} for own in pairs]
    for feed in feeds:
        outs = dict(zip(names, sess.run(None, dict(feed))))
        for own, a in zip(pairs, acc):
            for n, (ref, got) in own.items():
                a[n].add(outs[ref], outs[got])
    return [{n: x.db() for n, x in a.items()} for a in acc]


def _cumulative_sqnr(model, plan, table, feeds, threads) -> dict[str, float]:
    """SQNR of every quantized node's output in the whole INT8 model against FP32."""
    outputs = _node_outputs(model, plan)
    acc = {n: _Acc() for n in outputs}
    s_ref = _session(_with_outputs(model, outputs.values()), threads)
    s_q = _session(_with_outputs(write_trt_qdq(model, plan, table), outputs.values()), threads)
    rn, qn = [o.name for o in s_ref.get_outputs()], [o.name for o in s_q.get_outputs()]
    for feed in feeds:
        r = dict(zip(rn, s_ref.run(None, dict(feed))))
        q = dict(zip(qn, s_q.run(None, dict(feed))))
        for n, t in outputs.items():
            acc[n].add(r[t], q[t])
    return {n: a.db() for n, a in acc.items()}


def _node_outputs(model: onnx.ModelProto, plan: QuantPlan) -> dict[str, str]:
    by_name = {n.name: n for n in model.graph.node}
    return {n: by_name[n].output[0] for n in plan.quantized_nodes}


@dataclasses.dataclass
class Sensitivity:
    """The table after range refinement, what refinement changed, and every layer's error (worst first)."""

    table: CalibrationTable
    refined: list[dict[str, Any]]
    errors: list[LayerError]


def analyse(
    model: onnx.ModelProto,
    plan: QuantPlan,
    table: CalibrationTable,
    feeds: Iterable[Feed],
    refine: bool = True,
    threads: int = 0,
) -> Sensitivity:
    """Refine ranges (optional) and measure every layer's local and cumulative error.

    Refinement: per tensor, keep the method's amax or the observed max, whichever gives the
    layers reading it the smaller local error. A histogram method judges a tensor alone; what
    matters is the error of the layer that reads it (entropy clips EfficientNet-Lite0's pooled
    features at a fifth of their range, which costs the classifier 20 dB). Both candidates are
    measured in one pass (two shadows per layer), and the chosen table's local errors follow from
    it, so the whole analysis is two ONNX Runtime passes over ``feeds``: the shadows, then FP32
    against the INT8 model. Needs the observed max in ``table.details["tensors"][name]["max"]``.
    """
    feeds = list(feeds)
    alt = _alternatives(plan, table) if refine else {}
    settings = [(plan, table)]
    if alt:  # the second shadow set only for the layers reading a tensor with an alternative
        readers = {a.node for a in plan.activations if a.tensor in alt}
        settings.append((_only(plan, readers), CalibrationTable({**table.amax, **alt}, table.method, table.num_samples, table.details)))
    measured = _local_sqnr(model, settings, feeds, threads)
    local, changes = measured[0], []
    if alt:
        table, changes, local = _choose(model, plan, table, alt, measured, feeds, threads)
    cumulative = _cumulative_sqnr(model, plan, table, feeds, threads)
    errors = [LayerError(n, plan.op_types.get(n, ""), local[n], cumulative[n]) for n in plan.quantized_nodes]
    return Sensitivity(table, changes, sorted(errors, key=lambda e: e.local_sqnr_db))


def _alternatives(plan: QuantPlan, table: CalibrationTable) -> dict[str, float]:
    """Observed maxima of the tensors whose method amax clips below them."""
    per_tensor = table.details.get("tensors", {}) if isinstance(table.details, dict) else {}
    alt = {t: float(per_tensor[t]["max"]) for t in plan.qdq_tensors if isinstance(per_tensor.get(t), dict) and per_tensor[t].get("max")}
    return {t: v for t, v in alt.items() if t in table.amax and v > table.amax[t] * 1.001}


def _choose(model, plan, table, alt, measured, feeds, threads):
    base_db, alt_db = measured
    inputs: dict[str, set[str]] = {}
    consumers: dict[str, list[str]] = {}
    for a in plan.activations:
        consumers.setdefault(a.tensor, []).append(a.node)
        inputs.setdefault(a.node, set()).add(a.tensor)
    amax = dict(table.amax)
    changes = []
    for t, v in alt.items():
        nodes = consumers.get(t, [])
        # the worst consumer decides (dB averaged as power ratios would favour one big layer)
        before = min((base_db[n] for n in nodes), default=float("inf"))
        after = min((alt_db[n] for n in nodes), default=float("inf"))
        if after > before + 0.5:
            changes.append({"tensor": t, "method_amax": round(table.amax[t], 6), "max": round(v, 6), "sqnr_db": [round(before, 2), round(after, 2)]})
            amax[t] = v
    refined = CalibrationTable(amax, table.method, table.num_samples, {**table.details, "refined_to_max": [c["tensor"] for c in changes]})
    # a layer's error under the refined table was measured in one of the two shadows, unless
    # only some of its candidate inputs changed: measure those few again
    changed = {c["tensor"] for c in changes}
    local, mixed = {}, []
    for n in plan.quantized_nodes:
        candidates = inputs.get(n, set()) & set(alt)
        if not candidates & changed:
            local[n] = base_db[n]
        elif candidates <= changed:
            local[n] = alt_db[n]
        else:
            mixed.append(n)
    if mixed:
        local.update(_local_sqnr(model, [(_only(plan, mixed), refined)], feeds, threads)[0])
    return refined, changes, local


def _only(plan: QuantPlan, nodes: Iterable[str]) -> QuantPlan:
    keep = set(nodes)
    return plan.without([n for n in plan.quantized_nodes if n not in keep])


def layer_errors(
    model: onnx.ModelProto,
    plan: QuantPlan,
    table: CalibrationTable,
    feeds: Iterable[Feed],
    threads: int = 0,
) -> list[LayerError]:
    """Local and cumulative SQNR of every quantized node under ``table``, worst (lowest local) first."""
    return analyse(model, plan, table, feeds, refine=False, threads=threads).errors


# -- accuracy target -------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class AccuracyTarget:
    """``metric >= value`` against the FP32 model on held-out data: top1 agreement or cosine."""

    metric: str
    value: float

    def met(self, got: float) -> bool:
        return got >= self.value

    def __str__(self) -> str:
        return f"{self.metric}>={self.value:g}"


_METRICS = ("top1", "cosine")


def parse_accuracy_target(text: str) -> AccuracyTarget:
    """``top1>=0.95`` or ``cosine>=0.999``."""
    metric, sep, value = text.replace(" ", "").partition(">=")
    if not sep or metric not in _METRICS:
        raise ConfigError(f"accuracy target must look like top1>=0.95 or cosine>=0.999 (metrics: {', '.join(_METRICS)}), got {text!r}")
    try:
        v = float(value)
    except ValueError:
        raise ConfigError(f"accuracy target value must be a number, got {value!r}") from None
    if not 0.0 < v <= 1.0:
        raise ConfigError(f"accuracy target value must be in (0, 1], got {v}")
    return AccuracyTarget(metric, v)


def agreement(metric: str, ref: list[np.ndarray], got: list[np.ndarray]) -> float:
    """Top-1 agreement or mean per-sample cosine similarity of the first output."""
    r = np.concatenate([x.reshape(x.shape[0], -1) for x in ref]).astype(np.float64)
    g = np.concatenate([x.reshape(x.shape[0], -1) for x in got]).astype(np.float64)
    if metric == "top1":
        return float(np.mean(r.argmax(1) == g.argmax(1)))
    num = np.sum(r * g, axis=1)
    den = np.linalg.norm(r, axis=1) * np.linalg.norm(g, axis=1)
    return float(np.mean(np.where(den > 0, num / np.maximum(den, 1e-30), 1.0)))


def fallback_to_target(
    model: onnx.ModelProto,
    plan: QuantPlan,
    table: CalibrationTable,
    ranking: list[LayerError],
    target: AccuracyTarget,
    eval_feeds: Iterable[Feed],
    threads: int = 0,
    log: Callable[[str], None] | None = None,
) -> tuple[QuantPlan, list[dict[str, Any]], bool]:
    """Keep the most sensitive layers float, in ``ranking`` order, until ``target`` is met.

    Tries 0, 1, 2, 4, ... layers kept float (doubling, then bisecting to the least count that
    meets the target), so a model with many layers needs only a few evaluations. Returns the plan,
    the evaluations made, and whether the target was met.
    """
    feeds = list(eval_feeds)
    s_ref = _session(model, threads)
    ref = [s_ref.run(None, dict(f))[0] for f in feeds]
    del s_ref
    order = [e.node for e in ranking]
    history: list[dict[str, Any]] = []

    def score(k: int) -> float:
        p = plan.without(order[:k])
        s = _session(write_trt_qdq(model, p, table), threads)
        got = [s.run(None, dict(f))[0] for f in feeds]
        value = agreement(target.metric, ref, got)
        history.append({"kept_float": k, target.metric: round(value, 5)})
        if log:
            log(f"accuracy target {target}: {k} layer(s) float -> {target.metric} {value:.4f}")
        return value

    if target.met(score(0)):
        return plan, history, True
    lo, hi = 0, None  # lo fails; hi meets
    k = 1
    while k <= len(order):
        if target.met(score(k)):
            hi = k
            break
        lo = k
        k *= 2
    if hi is None:
        if lo < len(order) and target.met(score(len(order))):
            hi = len(order)
        else:
            return plan.without(order), history, False
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if target.met(score(mid)):
            hi = mid
        else:
            lo = mid
    return plan.without(order[:hi]), history, True
