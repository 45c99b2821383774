"""Run two models on the same inputs and measure how far the candidate's outputs are from the base's.

Outputs are compared feed by feed, so memory stays bounded whatever the data set size. Per output:
max/mean/median absolute and relative error, per-sample cosine similarity (over real tokens only
for token outputs), and the metric of its kind (:mod:`trtcompress.output_kinds`): top-1
agreement for classification outputs, relative error and the fraction of changed elements for
dense maps and regressions. The verdict checks each output against its kind's default threshold
(unless ``default_thresholds`` is off) and any threshold the user gave.
"""
from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any, Callable

import numpy as np
import onnx

from .config import Config
from .data.base import FeedSource, batch_size_of, model_inputs
from .errors import ConfigError, DataError, ModelError
from .model_io import load_model
from .output_kinds import DEFAULT_THRESHOLDS, DENSE_CHANGE, detect_kind, find_mask, is_probability_rows, parse_output_kinds
from .progress import Progress, known_length
from .runners import RunnerOptions, make_runner
from .runners.registry import ENGINE_SUFFIXES

__all__ = ["CompareConfig", "CompareResult", "compare", "compare_runners", "OutputStats", "thresholds"]

_MEDIAN_CAP = 4_000_000  # elements kept per output for the median (first ones seen)


@dataclasses.dataclass(frozen=True)
class CompareConfig(Config):
    """Tolerances. ``atol``/``rtol`` hold elementwise like numpy.allclose (checked only when set).

    ``min_cosine`` (every output; tokens: over real tokens), ``min_top1`` (classification outputs),
    ``max_rel_error`` and ``max_changed`` (dense outputs) replace the per-kind defaults
    (output_kinds.DEFAULT_THRESHOLDS), which apply unless ``default_thresholds`` is False.
    ``output_kinds``: "name=kind" items that override the detected kind of an output.
    """

    atol: float | None = None
    rtol: float | None = None
    min_cosine: float | None = None
    min_top1: float | None = None
    max_rel_error: float | None = None
    max_changed: float | None = None
    default_thresholds: bool = True
    output_kinds: tuple[str, ...] = ()
    outputs: tuple[str, ...] = ()  # compare only these outputs (default: all shared outputs)

    def validate(self) -> None:
        parse_output_kinds(self.output_kinds)
        for name in ("max_rel_error", "max_changed"):
            v = getattr(self, name)
            if v is not None and v < 0:
                raise ConfigError(f"{name} must be >= 0")
        for name in ("atol", "rtol"):
            v = getattr(self, name)
            if v is not None and v < 0:
                raise ConfigError(f"{name} must be >= 0")
        for name in ("min_cosine", "min_top1"):
            v = getattr(self, name)
            if v is not None and not -1.0 <= v <= 1.0:
                raise ConfigError(f"{name} must be within [-1, 1] (top-1 as a fraction, e.g. 0.9)")


class OutputStats:
    """Streaming error statistics for one output of kind ``kind`` (output_kinds.KINDS)."""

    def __init__(self, kind: str = "dense") -> None:
        self.kind = kind
        self.probability_map: bool | None = None  # dense values all in [0, 1] (decided on the first batch)
        self.probabilities: bool | None = None  # classification rows that are a softmax's (first batch)
        self.rel_l2: list[float] = []  # dense: ||c - b|| / ||b|| per sample
        self.changed = 0  # dense: elements that crossed 0.5 (probability map) or moved > DENSE_CHANGE * max|b|
        self.count = 0
        self.max_abs = 0.0
        self.sum_abs = 0.0
        self.max_rel = 0.0
        self.sum_rel = 0.0
        self.cos: list[float] = []
        self.top1_same = 0
        self.top1_total = 0
        self.outside = 0  # elements outside atol + rtol * |base|
        self._abs_sample: list[np.ndarray] = []
        self._kept = 0

    def update(self, base: np.ndarray, cand: np.ndarray, atol: float | None, rtol: float | None, mask: np.ndarray | None = None) -> None:
        if base.shape != cand.shape:
            raise DataError(f"output shapes differ: base {list(base.shape)} vs candidate {list(cand.shape)}")
        b = base.astype(np.float64, copy=False)
        c = cand.astype(np.float64, copy=False)
        diff = np.abs(b - c)
        rel = diff / np.maximum(np.abs(b), 1e-12)
        self.count += diff.size
        if diff.size:
            self.max_abs = max(self.max_abs, float(diff.max()))
            self.max_rel = max(self.max_rel, float(rel.max()))
        self.sum_abs += float(diff.sum())
        self.sum_rel += float(rel.sum())
        if atol is not None or rtol is not None:
            self.outside += int(np.count_nonzero(diff > (atol or 0.0) + (rtol or 0.0) * np.abs(b)))
        if self._kept < _MEDIAN_CAP:
            take = diff.ravel()[: _MEDIAN_CAP - self._kept].astype(np.float32)
            self._abs_sample.append(take)
            self._kept += take.size
        n = b.shape[0] if b.ndim else 1
        if self.kind == "tokens" and mask is not None and b.shape[:2] == mask.shape:
            # one cosine per token, averaged over the real tokens of each sample (padding excluded)
            t = b.shape[1]
            cos_tok = _cosine(b.reshape(n * t, -1), c.reshape(n * t, -1)).reshape(n, t)
            m = mask.astype(bool)
            self.cos.extend((np.where(m, cos_tok, 0).sum(1) / np.maximum(m.sum(1), 1)).tolist())
        else:
            self.cos.extend(_cosine(b.reshape(n, -1), c.reshape(n, -1)).tolist())
        if self.kind == "classification" and b.ndim >= 2 and b.shape[-1] > 1:
            if self.probabilities is None:
                self.probabilities = is_probability_rows(b)
            self.top1_same += int(np.count_nonzero(b.argmax(-1) == c.argmax(-1)))
            self.top1_total += int(np.prod(b.shape[:-1]))
        if self.kind == "dense":
            fb, fd = b.reshape(n, -1), (c - b).reshape(n, -1)
            if self.probability_map is None:
                self.probability_map = bool(b.size and b.min() >= 0 and b.max() <= 1)
            nb, nd = np.linalg.norm(fb, axis=1), np.linalg.norm(fd, axis=1)
            if self.probability_map:
                # relative to a probability's range (1), not to ||base||: a map of scores near 0 (no
                # speech, no text) would make any error look huge against its own tiny norm
                nb = np.full_like(nb, np.sqrt(fb.shape[1]))
            self.rel_l2.extend(np.where(nb > 0, nd / np.where(nb > 0, nb, 1), np.where(nd > 0, np.inf, 0.0)).tolist())
            if self.probability_map:
                self.changed += int(np.count_nonzero((b > 0.5) != (c > 0.5)))
            else:
                scale = np.abs(fb).max(axis=1, keepdims=True) if fb.shape[1] else np.zeros((n, 1))
                self.changed += int(np.count_nonzero(np.abs(fd) > DENSE_CHANGE * scale))

    def to_dict(self) -> dict[str, Any]:
        med = float(np.median(np.concatenate(self._abs_sample))) if self._abs_sample else 0.0
        return {
            "elements": self.count,
            "max_abs": self.max_abs,
            "mean_abs": self.sum_abs / self.count if self.count else 0.0,
            "median_abs": med,
            "max_rel": self.max_rel,
            "mean_rel": self.sum_rel / self.count if self.count else 0.0,
            "cosine_mean": float(np.mean(self.cos)) if self.cos else None,
            "cosine_min": float(np.min(self.cos)) if self.cos else None,
            "top1_agreement": self.top1_same / self.top1_total if self.top1_total else None,
            "outside_tolerance": self.outside,
            "kind": self.kind,
            **({"probabilities": self.probabilities} if self.kind == "classification" else {}),
            **(self._dense() if self.kind == "dense" else {}),
        }

    def _dense(self) -> dict[str, Any]:
        return {
            "rel_error_mean": float(np.mean(self.rel_l2)) if self.rel_l2 else None,
            "rel_error_max": float(np.max(self.rel_l2)) if self.rel_l2 else None,
            "changed_fraction": self.changed / self.count if self.count else 0.0,
            "rel_error_rule": "RMS error (a probability's range is 1)" if self.probability_map else "||candidate - base|| / ||base||",
            "changed_rule": "crosses 0.5" if self.probability_map else f"moves by more than {DENSE_CHANGE} x the sample's max |base|",
        }


def _cosine(fb: np.ndarray, fc: np.ndarray) -> np.ndarray:
    """Cosine per row; identical rows (all-zero ones included) are exactly 1, a zero row against a
    non-zero one is 0."""
    denom = np.linalg.norm(fb, axis=1) * np.linalg.norm(fc, axis=1)
    cos = np.clip((fb * fc).sum(axis=1) / np.where(denom > 0, denom, 1), -1.0, 1.0)
    same = (fb == fc).all(axis=1) if fb.shape[1] else np.ones(len(fb), bool)
    return np.where(same, 1.0, np.where(denom > 0, cos, 0.0))


@dataclasses.dataclass
class CompareResult:
    base: str
    candidate: str
    feeds: int
    samples: int
    outputs: dict[str, dict[str, Any]]
    failures: list[str]
    runner: dict[str, Any] = dataclasses.field(default_factory=dict)  # runner options the comparison used

    @property
    def passed(self) -> bool:
        return not self.failures

    def to_dict(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "passed": self.passed}


def compare_runners(base_runner, cand_runner, source: FeedSource, config: CompareConfig | None = None, progress: Callable[[int], None] | None = None) -> CompareResult:
    """Compare two (not yet activated) Polygraphy runners on every feed of ``source``."""
    config = config or CompareConfig()
    stats: dict[str, OutputStats] = {}
    kinds = parse_output_kinds(config.output_kinds)
    feeds = samples = 0
    with base_runner, cand_runner:
        for feed in source:
            out_b = base_runner.infer(feed)
            out_b = {k: np.array(v, copy=True) for k, v in out_b.items()}  # runners may reuse buffers
            out_c = cand_runner.infer(feed)
            names = _output_names(out_b, out_c, config.outputs)
            unknown = sorted(set(kinds) - set(out_b))
            if unknown:
                raise ConfigError(f"--output-kind names output(s) {', '.join(unknown)} that the model does not have (outputs: {', '.join(out_b)})")
            mask = find_mask(feed)
            for name in names:
                if name not in stats:
                    stats[name] = OutputStats(kinds.get(name) or detect_kind(name, out_b[name], mask))
                stats[name].update(out_b[name], np.asarray(out_c[name]), config.atol, config.rtol, mask)
            feeds += 1
            samples += batch_size_of(feed, getattr(source, "inputs", None)) if feed else 0
            if progress:
                progress(feeds)
    if not feeds:
        raise DataError("the data source yielded no inputs; check the data path and --limit")
    outputs = {k: s.to_dict() for k, s in stats.items()}
    return CompareResult(getattr(base_runner, "name", "base"), getattr(cand_runner, "name", "candidate"), feeds, samples, outputs, _failures(outputs, config))


def compare(base: str | os.PathLike, candidate: str | os.PathLike, source: FeedSource, config: CompareConfig | None = None, backend: str = "onnxrt", options: RunnerOptions | None = None, progress=None, base_backend: str | None = None) -> CompareResult:
    """Compare two model files on ``backend``; the base runs on ``base_backend``, by default the
    same, except that an ONNX base of a TensorRT engine runs on ONNX Runtime (the FP32 reference)."""
    options = options or RunnerOptions()
    check_same_inputs(base, candidate)
    if Path(candidate).suffix in ENGINE_SUFFIXES:
        if base_backend is None and Path(base).suffix not in ENGINE_SUFFIXES:
            base_backend = "onnxrt"
        backend = "trt"  # only TensorRT runs an engine
    base_backend = base_backend or backend
    base_options = options
    if backend == "onnxrt":
        options = exact_qdq_options(candidate, options)
    rb = make_runner(base, base_backend, options if base_backend == backend else base_options, name=str(base))
    rc = make_runner(candidate, backend, options, name=str(candidate))
    if progress is not None:
        result = compare_runners(rb, rc, source, config, progress)
    else:
        with Progress("comparing", known_length(source), unit="feed") as bar:
            result = compare_runners(rb, rc, source, config, lambda n: bar.update(1))
    result.runner = options.to_dict()
    return result


def check_same_inputs(base: str | os.PathLike, candidate: str | os.PathLike) -> None:
    """Refuse two models that cannot take the same feeds (names, dtypes, ranks or fixed dims differ)."""
    if any(Path(p).suffix in ENGINE_SUFFIXES for p in (base, candidate)):
        return  # a serialized engine: its inputs are checked when TensorRT loads it
    ib = {i.name: i for i in model_inputs(base)}
    ic = {i.name: i for i in model_inputs(candidate)}
    if set(ib) != set(ic):
        raise ModelError(f"the models' inputs differ (base: {', '.join(ib)}; candidate: {', '.join(ic)}); compare a model with a compressed copy of itself, which keeps its input names")
    for name, b in ib.items():
        c = ic[name]
        fixed_differ = len(b.shape) != len(c.shape) or any(isinstance(x, int) and isinstance(y, int) and x != y for x, y in zip(b.shape, c.shape))
        if b.dtype != c.dtype or fixed_differ:
            show = lambda i: f"{i.dtype}[{', '.join(str(d) for d in i.shape)}]"
            raise ModelError(f"input {name!r} differs between the models (base: {show(b)}; candidate: {show(c)}); compare models that take the same inputs")


def exact_qdq_options(model_path: str | os.PathLike, options: RunnerOptions) -> RunnerOptions:
    """ONNX Runtime options that compute a TensorRT-form model's exact Q/DQ arithmetic.

    For signed int8 Q/DQ (what TensorRT builds), ONNX Runtime's extended optimisations fuse the
    pattern into uint8 x int8 kernels that saturate on CPUs without VNNI (35% instead of 94% top-1
    agreement measured on EfficientNet-Lite0); the basic level keeps the arithmetic TensorRT runs.
    Accuracy is what a comparison measures, so it uses that level; benchmarks keep the options given.
    """
    if options.optimization in ("disable", "basic"):
        return options
    model = load_model(model_path, load_external_data=False, check=False)
    inits = {t.name: t.data_type for t in model.graph.initializer}
    signed = any(
        n.op_type == "QuantizeLinear" and len(n.input) > 2 and inits.get(n.input[2]) == onnx.TensorProto.INT8
        for n in model.graph.node
    )
    return options.replace(optimization="basic") if signed else options


def _output_names(out_b: dict, out_c: dict, wanted: tuple[str, ...]) -> list[str]:
    if wanted:
        missing = [n for n in wanted if n not in out_b or n not in out_c]
        if missing:
            raise DataError(f"output(s) {', '.join(missing)} not produced by both models (base: {', '.join(out_b)}; candidate: {', '.join(out_c)}); pass --outputs names from both lists")
        return list(wanted)
    shared = [n for n in out_b if n in out_c]
    if shared:
        return shared
    if len(out_b) == len(out_c):
        raise DataError(f"the models' outputs have different names (base: {', '.join(out_b)}; candidate: {', '.join(out_c)}); pass --outputs or rename them")
    raise DataError(f"the models share no outputs (base: {', '.join(out_b)}; candidate: {', '.join(out_c)})")


def thresholds(kind: str, config: CompareConfig) -> dict[str, float]:
    """The thresholds output of ``kind`` is judged by: the kind's defaults, replaced by the user's."""
    t = dict(DEFAULT_THRESHOLDS[kind]) if config.default_thresholds else {}
    for key in ("min_cosine", "min_top1", "max_rel_error", "max_changed"):
        v = getattr(config, key)
        if v is not None and (key == "min_cosine" or key in DEFAULT_THRESHOLDS[kind]):
            t[key] = v
    return t


def _failures(outputs: dict[str, dict[str, Any]], config: CompareConfig) -> list[str]:
    """One line per failing output: its name and kind, then each failed check (measured vs threshold)."""
    fails = []
    for name, o in outputs.items():
        o["thresholds"] = t = thresholds(o["kind"], config)
        why = []
        if (config.atol is not None or config.rtol is not None) and o["outside_tolerance"]:
            why.append(f"{o['outside_tolerance']} of {o['elements']} elements outside atol={config.atol or 0} rtol={config.rtol or 0} (max abs {o['max_abs']:.3g})")
        if "min_cosine" in t and o["cosine_min"] is not None and o["cosine_min"] < t["min_cosine"]:
            over = " over real tokens" if o["kind"] == "tokens" else ""
            why.append(f"cosine similarity{over} {o['cosine_min']:.6f} < {t['min_cosine']} (worst sample)")
        if "min_top1" in t and o["top1_agreement"] is not None and o["top1_agreement"] < t["min_top1"]:
            why.append(f"top-1 agreement {o['top1_agreement']:.4f} < {t['min_top1']}")
        if "max_rel_error" in t and o.get("rel_error_max") is not None and o["rel_error_max"] > t["max_rel_error"]:
            why.append(f"relative error {o['rel_error_max']:.4f} > {t['max_rel_error']} (worst sample, {o.get('rel_error_rule', '||candidate - base|| / ||base||')})")
        if "max_changed" in t and o.get("changed_fraction") is not None and o["changed_fraction"] > t["max_changed"]:
            why.append(f"{o['changed_fraction']:.2%} of elements changed ({o['changed_rule']}) > {t['max_changed']:.2%}")
        if why:
            fails.append(f"{name} ({o['kind']}): " + "; ".join(why))
    return fails
