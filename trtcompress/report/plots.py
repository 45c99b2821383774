"""The report's figures, read from ``report.json`` with tolerance: a section the run did not produce
(no benchmark, no quantize stage, an older report) gives no figure rather than an error."""
from __future__ import annotations

import dataclasses
import math
from typing import Any, Iterator, Sequence

from . import svg
from .variants import Variant

__all__ = ["Figure", "stage_reports", "number", "latency_figures", "quantization_figures", "sparsity_figures", "rank_figures",
           "loss_figures", "tradeoff_figures", "loss_curves", "MAX_LAYERS"]

MAX_LAYERS = 120  # rows of a per-layer chart; more are cut, and the caption says how many
# where a stage's report keeps its training loss; the first found is drawn
LOSS_KEYS = ("loss_history", "loss_curve", "history", "losses")


@dataclasses.dataclass(frozen=True)
class Figure:
    plot: str  # the svg's data-plot
    svg: str
    caption: str


def stage_reports(report: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    for s in report.get("stages") or []:
        if isinstance(s, dict) and isinstance(s.get("report"), dict):
            yield str(s.get("name", "stage")), s["report"]


def number(v: Any) -> float | None:
    """``v`` as a finite float, or None (a report read from JSON may hold anything)."""
    return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) else None


def _cut(rows: list, what: str) -> tuple[list, str]:
    if len(rows) <= MAX_LAYERS:
        return rows, ""
    return rows[:MAX_LAYERS], f" The first {MAX_LAYERS} of {len(rows)} {what} are drawn; report.json holds them all."


def latency_figures(report: dict[str, Any]) -> list[Figure]:
    """One box-and-dots chart per batch size of every model's timed runs (``samples_ms``)."""
    results = ((report.get("bench") or {}).get("results")) or {}
    out = []
    for batch, models in results.items():
        groups = [(label, [v for v in stats.get("samples_ms") or [] if number(v) is not None])
                  for label, stats in (models or {}).items() if isinstance(stats, dict)]
        if not any(s for _, s in groups):
            continue
        values = [v for _, s in groups for v in s]
        log = min(values) > 0 and max(values) / min(values) > 20  # a long tail would squash the box
        out.append(Figure(f"latency-batch-{batch}", svg.distribution(
            f"latency-batch-{batch}", f"Latency at batch {batch}", groups, "ms per inference" + (" (log scale)" if log else ""), log_x=log),
            f"Every timed run at batch {batch} (dots), with the quartiles (box), the median (bar) and the range. "
            "Runs were interleaved between the models in the same process, so the comparison is fair."))
    return out


def quantization_figures(report: dict[str, Any]) -> list[Figure]:
    """Per-layer SQNR (the quantize stage's ``layer_error``) and the accuracy target's search."""
    out = []
    for name, r in stage_reports(report):
        rows = [e for e in r.get("layer_error") or [] if isinstance(e, dict)]
        if rows:
            rows, more = _cut(rows, "layers")
            labels = [str(e.get("node", "?")) for e in rows]
            series = [svg.Series("this layer alone (local)", [number(e.get("local_sqnr_db")) for e in rows]),
                      svg.Series("with every layer before it (cumulative)", [number(e.get("cumulative_sqnr_db")) for e in rows])]
            out.append(Figure("quant-sqnr", svg.bars("quant-sqnr", f"{name}: per-layer quantization SQNR", labels, series, "SQNR, dB (higher: less error)"),
                              "Signal-to-quantization-noise ratio of each quantized layer's output on calibration samples, "
                              "most sensitive first (lowest local SQNR): those layers are the first kept float for an accuracy target." + more))
        target = r.get("accuracy_target")
        evals = [e for e in (target or {}).get("evaluations") or [] if isinstance(e, dict)] if isinstance(target, dict) else []
        if evals:
            metric = next((k for k in evals[0] if k != "kept_float"), None)
            if metric is not None:
                xs = [number(e.get("kept_float")) for e in evals]
                ys = [number(e.get(metric)) for e in evals]
                pts = sorted((x, y) for x, y in zip(xs, ys) if x is not None and y is not None)
                goal = number(_target_value(target.get("target")))
                if pts:
                    out.append(Figure("quant-sensitivity", svg.lines(
                        "quant-sensitivity", f"{name}: accuracy target {target.get('target', '')}",
                        [svg.Series(metric, [y for _, y in pts], [x for x, _ in pts])], "layers kept float (most sensitive first)", metric,
                        marks=[("target", goal)] if goal is not None else ()),
                        f"The search for the fewest float layers that meet the target ({'met' if target.get('met') else 'not met'})."))
    return out


def _target_value(text: Any) -> float | None:
    """The value of an accuracy target written as ``metric>=value``."""
    try:
        return float(str(text).rpartition(">=")[2])
    except ValueError:
        return None


def sparsity_figures(report: dict[str, Any]) -> list[Figure]:
    """Per-layer fraction of zero weights after a pruning stage (its ``layers`` with ``zeros_after``)."""
    out = []
    for name, r in stage_reports(report):
        rows = [l for l in r.get("layers") or [] if isinstance(l, dict) and number(l.get("zeros_after")) is not None]
        if not rows:
            continue
        dense = [l for l in r.get("skipped") or [] if isinstance(l, dict)]
        rows, more = _cut(rows, "layers")
        labels = [str(l.get("layer", l.get("name", "?"))) for l in rows]
        before = [100 * (number(l.get("zeros_before")) or 0.0) for l in rows]
        series = ([svg.Series("zero weights before", before)] if any(before) else []) + [svg.Series("zero weights after", [100 * number(l["zeros_after"]) for l in rows])]
        skipped = f" {len(dense)} layer(s) were left dense (see the stage's report for why)." if dense else ""
        out.append(Figure("layer-sparsity", svg.bars("layer-sparsity", f"{name}: per-layer sparsity", labels, series, "zero weights, %"),
                          "Share of each pruned layer's weights that are zero (2:4 structured sparsity is 50%)." + skipped + more))
    return out


def rank_figures(report: dict[str, Any]) -> list[Figure]:
    """Per-layer kept rank against the full rank (a low-rank stage's ``layers`` with ``rank``)."""
    out = []
    for name, r in stage_reports(report):
        rows = [l for l in r.get("layers") or [] if isinstance(l, dict) and number(l.get("rank")) is not None]
        if not rows:
            continue
        rows, more = _cut(rows, "layers")
        labels = [str(l.get("name", l.get("layer", "?"))) for l in rows]
        series = [svg.Series("full rank", [number(l.get("full_rank")) for l in rows]), svg.Series("kept rank", [number(l["rank"]) for l in rows])]
        out.append(Figure("layer-rank", svg.bars("layer-rank", f"{name}: per-layer rank", labels, series, "rank"),
                          "Each factorised layer's rank against the full rank of its weight matrix." + more))
    return out


def loss_curves(stage_report: dict[str, Any]) -> list[svg.Series]:
    """The training loss a stage reports, in any of the forms in use: ``[[step, loss], ...]``,
    ``[loss, ...]``, ``[{"step": .., "loss": ..}, ...]``, ``{"step": [...], "loss": [...]}``, or a
    mapping of such curves by name (e.g. train and eval); one level of nesting is searched too."""
    for holder in (stage_report, *(v for v in stage_report.values() if isinstance(v, dict))):
        for key in LOSS_KEYS:
            if key in holder:
                value = holder[key]
                if isinstance(value, dict) and not _xy_dict(value):  # curves by name
                    curves = [c for c in (_curve(str(n), v) for n, v in value.items()) if c is not None]
                else:
                    curves = [c for c in (_curve("loss", value),) if c is not None]
                if curves:
                    return curves
    return []


_X_KEYS = ("step", "steps", "epoch", "epochs", "x", "iteration")
_Y_KEYS = ("loss", "losses", "value", "y")


def _xy_dict(d: dict) -> bool:
    return any(k in d for k in _X_KEYS) and any(k in d for k in _Y_KEYS)


def _curve(name: str, value: Any) -> svg.Series | None:
    if isinstance(value, dict):  # {"step": [...], "loss": [...]}
        xs = next((value[k] for k in _X_KEYS if k in value), None)
        ys = next((value[k] for k in _Y_KEYS if k in value), None)
        value = list(zip(xs, ys)) if isinstance(xs, list) and isinstance(ys, list) else []
    if not isinstance(value, list) or not value:
        return None
    pts: list[tuple[float, float]] = []
    for i, v in enumerate(value):
        if isinstance(v, (list, tuple)) and len(v) >= 2:
            x, y = number(v[0]), number(v[-1])
        elif isinstance(v, dict):
            x = number(next((v[k] for k in _X_KEYS if k in v), i))
            y = number(next((v[k] for k in _Y_KEYS if k in v), None))
        else:
            x, y = float(i), number(v)
        if x is not None and y is not None:
            pts.append((x, y))
    return svg.Series(name, [y for _, y in pts], [x for x, _ in pts]) if pts else None


def loss_figures(report: dict[str, Any]) -> list[Figure]:
    """The distillation (fine-tuning) loss of every stage that reports one."""
    out = []
    for i, (name, r) in enumerate(stage_reports(report)):
        curves = loss_curves(r)
        if curves:
            ys = [y for c in curves for y in c.ys if y is not None]
            log = min(ys) > 0 and max(ys) / min(ys) > 30
            plot = f"loss-{i}-{name}"
            out.append(Figure(plot, svg.lines(plot, f"{name}: distillation loss", curves, "step", "loss" + (" (log scale)" if log else ""), log_y=log),
                              "Training loss of the fine-tuning (a running mean over recent steps where the stage logs one)."))
    return out


def tradeoff_figures(variants: Sequence[Variant]) -> list[Figure]:
    """Accuracy against size and against latency, one point per variant (FP32 and the compressed
    model of a run; every variant of a sweep)."""
    acc = [v for v in variants if v.accuracy is not None]
    if not acc:
        return []
    metric = acc[0].metric
    out = []
    sized = [svg.Point(v.name, v.size_bytes / 1e6, v.accuracy) for v in acc if v.size_bytes]
    if sized:
        out.append(Figure("tradeoff-size", svg.scatter("tradeoff-size", "Accuracy against size", sized, "size on disk, MB", metric),
                          f"Each model's {metric} against its size on disk."))
    timed = [svg.Point(v.name, v.latency_ms, v.accuracy) for v in acc if v.latency_ms]
    if timed:
        batch = next((v.batch for v in acc if v.batch is not None), None)
        out.append(Figure("tradeoff-speed", svg.scatter("tradeoff-speed", "Accuracy against latency", timed, f"p50 latency at batch {batch}, ms", metric),
                          f"Each model's {metric} against its median latency (lower is faster)."))
    return out
