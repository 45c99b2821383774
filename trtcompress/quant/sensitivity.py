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
from ..sessions import SessionConfig, open_session
from ..weightless import add_outputs
from .placement import QuantInput, QuantPlan, WeightSpec
from .qdq_trt import SharedWeights, write_trt_qdq
from .table import CalibrationTable

__all__ = ["LayerError", "Sensitivity", "AnalysisBudget", "analyse", "candidate_ranges", "layer_errors", "AccuracyTarget", "parse_accuracy_target", "fallback_to_target", "sqnr_db"]

Feed = Mapping[str, np.ndarray]
_SHADOW = "__trtcompress_shadow"
# The models measured here store weights as int8 + DQ: the same arithmetic as float + Q/DQ, without
# ONNX Runtime folding QuantizeLinear over every weight when the session starts (25 s for a 2 GB
# MatMul, against 0.6 s for its int8 form).
_WEIGHTS = "int8"


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


def _session(model: onnx.ModelProto, threads: int = 0, outputs: Iterable[str] = (), exact: bool = False):
    """Each session runs a few batches between numpy work on the same cores: workers spinning
    after a run would take those cores. ``exact``: the basic graph-optimisation level, whose Q/DQ
    arithmetic is TensorRT's (the extended level fuses the TensorRT form's signed Q/DQ into uint8 x
    int8 kernels that saturate on CPUs without VNNI: see comparison.exact_qdq_options)."""
    config = SessionConfig(threads=threads, spinning=False, optimization="basic" if exact else "all")
    return open_session(model, config, outputs=list(outputs))


Setting = tuple[QuantPlan, CalibrationTable]


def _shadow_model(model: onnx.ModelProto, settings: list[Setting]) -> tuple[onnx.ModelProto, list[dict[str, tuple[str, str]]]]:
    """FP32 model plus, per (plan, table) setting and per quantized node of its plan, a Q/DQ'd
    shadow reading the FP32 activations: one pass measures every layer under every setting.

    Every setting's shadows are added first (on onnx-ir), then each set gets its Q/DQ: a set's
    Q/DQ nodes go just before its own shadows, so the graph is the one a set-by-set build gives."""
    import onnx_ir as ir

    work = ir.from_proto(model)
    by_name = {n.name: n for n in work.graph}
    pairs: list[dict[str, tuple[str, str]]] = []
    for k, (plan, _) in enumerate(settings):
        tag = f"{_SHADOW}{k}"
        own = {}
        for name in plan.quantized_nodes:
            n = by_name[name]
            s = ir.Node(n.domain, n.op_type, list(n.inputs), attributes=list(n.attributes.values()), overload=n.overload,
                        outputs=[ir.Value(name=o.name + tag if o.name else "") for o in n.outputs], version=n.version, name=name + tag,
                        doc_string=n.doc_string, metadata_props=dict(n.metadata_props))
            work.graph.append(s)  # shadows read only existing tensors: appending keeps the order valid
            own[name] = (n.outputs[0].name, s.outputs[0].name)
        pairs.append(own)
    m = ir.to_proto(work)
    shared = SharedWeights()  # a weight's Q/DQ serves every setting whose scale for it is the same
    for k, (plan, table) in enumerate(settings):
        tag = f"{_SHADOW}{k}"
        shadow_plan = QuantPlan(
            [QuantInput(a.node + tag, a.index, a.tensor) for a in plan.activations],
            [WeightSpec(w.node + tag, w.index, w.tensor, w.axis) for w in plan.weights],
            [n + tag for n in plan.quantized_nodes],
            {},
            {},
        )
        m = write_trt_qdq(m, shadow_plan, table, weights=_WEIGHTS, suffix=tag, shared=shared, in_place=True)
    return add_outputs(m, [t for own in pairs for pair in own.values() for t in pair]), pairs


def _outputs(sess, feed: Feed) -> dict[str, np.ndarray]:
    """Every output of ``sess`` on ``feed``, as numpy views of ONNX Runtime's own buffers:
    ``run()`` copies each output, and the shadow pass hands back every quantized layer's output
    twice or more (807 MB for EfficientNet-Lite0 on 8 samples)."""
    io = sess.io_binding()
    held = {k: np.ascontiguousarray(v) for k, v in feed.items()}  # the binding does not own them
    for k, v in held.items():
        io.bind_cpu_input(k, v)
    names = [o.name for o in sess.get_outputs()]
    computed = [n for n in names if n not in held]  # a graph input is taken from the feed
    for n in computed:
        io.bind_output(n, "cpu")
    sess.run_with_iobinding(io)
    got = dict(zip(computed, (v.numpy() for v in io.get_outputs())))
    return {n: got[n] if n in got else held[n] for n in names}


# FP32 outputs of the quantized layers that the shadow pass keeps for the cumulative pass, which
# then runs only the INT8 model (one session and one FP32 pass fewer). When one batch holds every
# sensitivity sample the cumulative pass held as much at once before; past this, with several
# batches, they are recomputed as before.
REFERENCE_BUDGET = 512 << 20


def _local_sqnr(model, settings: list[Setting], feeds, threads, keep_reference: bool = False) -> tuple[list[dict[str, float]], list[dict[str, np.ndarray]] | None]:
    """SQNR of every quantized node alone (float inputs, quantized arithmetic), per setting; with
    ``keep_reference``, also the FP32 output of every quantized node of the first setting's plan
    per feed (None when they would pass ``REFERENCE_BUDGET``)."""
    if not any(plan.quantized_nodes for plan, _ in settings):
        return [{} for _ in settings], None
    shadow, pairs = _shadow_model(model, settings)
    sess = _session(shadow, threads, exact=True)
    acc = [{n: _Acc() for n in own} for own in pairs]
    kept: list[dict[str, np.ndarray]] | None = [] if keep_reference else None
    held = 0
    for feed in feeds:
        outs = _outputs(sess, feed)
        for own, a in zip(pairs, acc):
            for n, (ref, got) in own.items():
                a[n].add(outs[ref], outs[got])
        if kept is not None:
            kept.append({n: outs[ref] for n, (ref, _) in pairs[0].items()})
            held += sum(v.nbytes for v in kept[-1].values())
            if held > REFERENCE_BUDGET and len(feeds) > 1:
                kept = None  # the cumulative pass computes them again, one batch at a time
        del outs
    return [{n: x.db() for n, x in a.items()} for a in acc], kept


def _cumulative_sqnr(model, plan, table, feeds, threads, reference: list[dict[str, np.ndarray]] | None = None) -> dict[str, float]:
    """SQNR of every quantized node's output in the whole INT8 model against FP32 (``reference``:
    the FP32 outputs per feed, from the shadow pass; None: computed here)."""
    by_name = {n.name: n for n in model.graph.node}
    outputs = {n: by_name[n].output[0] for n in plan.quantized_nodes}
    acc = {n: _Acc() for n in outputs}
    # the basic level, as the shadow pass that otherwise gives these references: same numbers either way
    s_ref = _session(model, threads, outputs.values(), exact=True) if reference is None else None
    s_q = _session(add_outputs(write_trt_qdq(model, plan, table, weights=_WEIGHTS), outputs.values()), threads, exact=True)
    for k, feed in enumerate(feeds):
        if reference is None:
            r = _outputs(s_ref, feed)
            ref = {n: r[t] for n, t in outputs.items()}
            del r
        else:
            ref = reference[k]
        q = _outputs(s_q, feed)
        for n, t in outputs.items():
            acc[n].add(ref[n], q[t])
        del q, ref
    return {n: a.db() for n, a in acc.items()}


@dataclasses.dataclass
class Sensitivity:
    """The table after the range choice, what the choice changed, and every layer's error (worst first)."""

    table: CalibrationTable
    refined: list[dict[str, Any]]
    errors: list[LayerError]


def analyse(
    model: onnx.ModelProto,
    plan: QuantPlan,
    table: CalibrationTable,
    feeds: Iterable[Feed],
    refine: bool = True,
    keep: Iterable[str] = (),
    margin_db: float = 0.5,
    threads: int = 0,
) -> Sensitivity:
    """Choose ranges (optional) and measure every layer's local and cumulative error.

    Range choice: a method judges a tensor from its own histogram; what matters is the error of
    the layers that read it (entropy clips EfficientNet-Lite0's pooled features at a fifth of
    their range, and the Fashion CNN's first ReLU at half). Each tensor's candidates are the
    method's amax, the observed max and the other methods' thresholds recorded by calibration
    (:func:`candidate_ranges`); a tensor takes the candidate whose worst consumer has the least
    local error, when that gains more than ``margin_db`` (a guard against fitting the few
    samples). Tensors in ``keep`` keep their amax. Every candidate is measured in one pass (one
    shadow set per candidate, only for the layers with a choice), and the chosen table's local
    errors are read off it, so the whole analysis is two ONNX Runtime passes over ``feeds``: the
    shadows (which keep the FP32 outputs, see ``REFERENCE_BUDGET``), then the INT8 model.
    """
    feeds = list(feeds)
    options, keys, settings = _settings(plan, table, refine, keep)
    measured, reference = _local_sqnr(model, settings, feeds, threads, keep_reference=True)
    local, changes = measured[0], []
    if options:
        table, changes = _choose(plan, table, options, dict(zip(["method", *keys], measured)), margin_db)
        local, mixed = _local_of(plan, table, settings, measured)
        if mixed:
            local.update(_local_sqnr(model, [(_only(plan, mixed), table)], feeds, threads)[0][0])
    cumulative = _cumulative_sqnr(model, plan, table, feeds, threads, reference)
    errors = [LayerError(n, plan.op_types.get(n, ""), local[n], cumulative[n]) for n in plan.quantized_nodes]
    return Sensitivity(table, changes, sorted(errors, key=lambda e: e.local_sqnr_db))


def _settings(plan: QuantPlan, table: CalibrationTable, refine: bool, keep: Iterable[str]) -> tuple[dict[str, dict[str, float]], list[str], list[Setting]]:
    """The range candidates per tensor, their keys, and the settings the shadow pass measures: the
    table's, then per candidate key the layers that read a tensor with that candidate."""
    options = _options(plan, table, set(keep)) if refine else {}
    settings: list[Setting] = [(plan, table)]
    keys = list(dict.fromkeys(k for c in options.values() for k in c))
    for key in keys:
        moved = {t: c[key] for t, c in options.items() if key in c}
        readers = {a.node for a in plan.activations if a.tensor in moved}
        settings.append((_only(plan, readers), CalibrationTable({**table.amax, **moved}, table.method, table.num_samples, table.details)))
    return options, keys, settings


@dataclasses.dataclass(frozen=True)
class AnalysisBudget:
    """How many of the kept samples the analysis runs on, and how many per ONNX Runtime call.

    Per sample the analysis runs the FP32 model, every setting's shadow layers and the INT8 model:
    with the four range candidates that is about six forward passes, so 8 samples cost more than
    a 32-sample calibration (a VGG-16 SSD at 320x320: 33 s against 17 s, and 6.9 GB held at once).
    The count is decided from multiply-accumulates counted on the graph, not from a clock, so a
    run gives the same result on any machine: the analysis may cost ``calibration_share`` of the
    calibration pass or ``floor_macs``, whichever is more (small models keep every sample), and
    never fewer than ``min_samples``. Each call runs as many samples as keep the shadow pass's
    outputs within ``bytes_per_call``. The range choice held on one sample: EfficientNet-Lite0
    analysed on 1, 2, 4 or 8 samples gave 93-95% top-1 agreement on the tune photos in both forms
    (benchmarks/RESULTS.md, "Sensitivity analysis sized to calibration")."""

    calibration_share: float = 0.25
    floor_macs: float = 200e9
    min_samples: int = 1
    bytes_per_call: int = 512 << 20

    def size(self, model: onnx.ModelProto, plan: QuantPlan, table: CalibrationTable, available: int, calibration_samples: int,
             refine: bool = True, keep: Iterable[str] = ()) -> dict[str, Any]:
        """``samples`` to analyse of the ``available`` kept ones and ``batch`` per call (None: all
        at once), with the cost per sample they come from (``model`` shape-inferred)."""
        from ..lowrank.flops import model_macs

        _, _, settings = _settings(plan, table, refine, keep)
        macs = model_macs(model, infer=False)
        fp32 = sum(macs.values())
        # the FP32 model and the INT8 model once each, and every setting's shadow layers
        per_sample = 2 * fp32 + sum(macs.get(n, 0) for p, _ in settings for n in p.quantized_nodes)
        allowed = max(self.floor_macs, self.calibration_share * calibration_samples * fp32)
        samples = available if per_sample * available <= allowed else min(available, max(self.min_samples, int(allowed // max(per_sample, 1))))
        elements = _output_elements(model)
        out_bytes = 4 * (sum(elements.get(n, 0) for n in plan.quantized_nodes) + sum(elements.get(n, 0) for p, _ in settings for n in p.quantized_nodes))
        batch = None if out_bytes * samples <= self.bytes_per_call else max(1, self.bytes_per_call // max(out_bytes, 1))
        return {"samples": samples, "of": available, "batch": batch, "gmacs_per_sample": round(per_sample / 1e9, 3),
                "calibration_gmacs": round(calibration_samples * fp32 / 1e9, 3)}


def _output_elements(model: onnx.ModelProto) -> dict[str, int]:
    """Elements per sample of each node's first output, from the shapes ``model`` carries (the
    first dimension, the batch, left out; unknown shapes left out)."""
    shapes = {}
    for vi in model.graph.value_info:
        d = [x.dim_value if x.HasField("dim_value") else 0 for x in vi.type.tensor_type.shape.dim]
        if len(d) > 1 and all(d[1:]):
            shapes[vi.name] = int(np.prod(d[1:], dtype=np.int64))
    return {n.name: shapes[n.output[0]] for n in model.graph.node if n.output and n.output[0] in shapes}


def candidate_ranges(table: CalibrationTable, tensor: str) -> dict[str, float]:
    """Candidate amax values of ``tensor``: the table's (``method``), then the observed max and the
    thresholds calibration recorded (``details["tensors"][t]["candidates"]``), distinct values only."""
    out = {"method": float(table.amax[tensor])}
    info = table.details.get("tensors", {}).get(tensor) if isinstance(table.details, dict) else None
    if isinstance(info, dict):
        extra = dict(info.get("candidates") or {})
        if info.get("max"):
            extra.setdefault("max", info["max"])
        for k, v in extra.items():
            v = float(v)
            if v > 0 and math.isfinite(v) and all(abs(v - u) > 1e-3 * u for u in out.values()):
                out[k] = v
    return out


def _options(plan: QuantPlan, table: CalibrationTable, keep: set[str]) -> dict[str, dict[str, float]]:
    """Per Q/DQ tensor with a choice, its candidates other than the method's amax."""
    out = {}
    for t in plan.qdq_tensors:
        if t in table.amax and t not in keep:
            c = candidate_ranges(table, t)
            c.pop("method")
            if c:
                out[t] = c
    return out


def _choose(plan, table, options, db_of, margin_db) -> tuple[CalibrationTable, list[dict[str, Any]]]:
    """Per tensor, the candidate whose worst consumer has the least local error (``db_of``: the
    local SQNR of every measured layer per candidate key)."""
    consumers: dict[str, list[str]] = {}
    for a in plan.activations:
        consumers.setdefault(a.tensor, []).append(a.node)
    amax = dict(table.amax)
    changes = []
    for t, c in options.items():
        nodes = consumers.get(t, [])
        # the worst consumer decides (dB averaged as power ratios would favour one big layer)
        score = {k: min((db_of[k][n] for n in nodes), default=float("inf")) for k in ["method", *c]}
        best = max(score, key=lambda k: score[k])
        if best != "method" and score[best] > score["method"] + margin_db:
            amax[t] = c[best]
            changes.append({"tensor": t, "candidate": best, "method_amax": round(table.amax[t], 6), "amax": round(c[best], 6),
                            "sqnr_db": [round(score["method"], 2), round(score[best], 2)]})
    details = {**table.details, "range_choice": {c["tensor"]: c["candidate"] for c in changes}} if isinstance(table.details, dict) else {}
    return CalibrationTable(amax, table.method, table.num_samples, details), changes


def _local_of(plan, table, settings, measured) -> tuple[dict[str, float], list[str]]:
    """Each layer's local error under ``table``, from the setting whose ranges equal the table's on
    all of the layer's inputs; the layers no setting matches (some inputs moved, others not)."""
    inputs: dict[str, list[str]] = {}
    for a in plan.activations:
        inputs.setdefault(a.node, []).append(a.tensor)
    local, mixed = {}, []
    for n in plan.quantized_nodes:
        match = next((m[n] for (_, t), m in zip(settings, measured) if n in m and all(t.amax[u] == table.amax[u] for u in inputs.get(n, []))), None)
        if match is None:
            mixed.append(n)
        else:
            local[n] = match
    return local, mixed


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
    reference: onnx.ModelProto | None = None,
) -> tuple[QuantPlan, list[dict[str, Any]], bool]:
    """Keep the most sensitive layers float, in ``ranking`` order, until ``target`` is met.

    Tries 0, 1, 2, 4, ... layers kept float (doubling, then bisecting to the least count that
    meets the target), so a model with many layers needs only a few evaluations. Returns the plan,
    the evaluations made, and whether the target was met. ``reference``: the FP32 model to agree
    with when ``model`` is a rewritten float model (post-training techniques); default ``model``.
    """
    feeds = list(eval_feeds)
    s_ref = _session(reference if reference is not None else model, threads)
    ref = [s_ref.run(None, dict(f))[0] for f in feeds]
    del s_ref
    order = [e.node for e in ranking]
    history: list[dict[str, Any]] = []

    def score(k: int) -> float:
        p = plan.without(order[:k])
        s = _session(write_trt_qdq(model, p, table, weights=_WEIGHTS), threads, exact=True)
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
