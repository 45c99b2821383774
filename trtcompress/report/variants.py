"""Variants: one point each on the accuracy-against-size and accuracy-against-speed plots.

A ``compress`` run has two (the FP32 baseline and the compressed model); a sweep has one per
run and passes them all to :func:`trtcompress.report.plots.tradeoff_figures`.
"""
from __future__ import annotations

import dataclasses
from typing import Any

__all__ = ["Variant", "run_variants", "accuracy_of"]

# the metric a variant's accuracy is read from, first found wins: an output's kind decides which
# its comparison holds (top-1 for classification; cosine for every kind)
_METRICS = (("top1_agreement", "top-1 agreement with FP32"), ("cosine_mean", "mean cosine similarity with FP32"))


@dataclasses.dataclass(frozen=True)
class Variant:
    """One model: its size on disk, its p50 latency at ``batch``, its accuracy against FP32."""

    name: str
    size_bytes: int | None
    latency_ms: float | None
    accuracy: float | None
    metric: str = _METRICS[0][1]
    batch: str | None = None


def accuracy_of(report: dict[str, Any]) -> tuple[float | None, str, str | None]:
    """The compressed model's accuracy against FP32 at the first output that has a metric:
    (value, metric description, output name)."""
    outputs = (report.get("compare") or {}).get("outputs") or {}
    for key, what in _METRICS:
        for name, o in outputs.items():
            if isinstance(o, dict) and isinstance(o.get(key), (int, float)):
                return float(o[key]), what, name
    return None, _METRICS[0][1], None


def run_variants(report: dict[str, Any], name: str = "compressed") -> list[Variant]:
    """The FP32 baseline and the compressed model of one ``compress`` report (FP32 agrees with
    itself: accuracy 1)."""
    sizes = ((report.get("metrics") or {}).get("compression")) or {}
    accuracy, metric, _ = accuracy_of(report)
    results = ((report.get("bench") or {}).get("results")) or {}
    batch = next(iter(results), None)
    p50 = {label: _p50(stats) for label, stats in (results.get(batch) or {}).items()}
    return [
        Variant("FP32", sizes.get("bytes_original"), p50.get("original"), 1.0 if accuracy is not None else None, metric, batch),
        Variant(name, sizes.get("bytes_compressed"), p50.get("compressed"), accuracy, metric, batch),
    ]


def _p50(stats: Any) -> float | None:
    if not isinstance(stats, dict):
        return None
    gpu = stats.get("gpu")  # the GPU compute time where the backend measured one (as the speedup does)
    value = (gpu if isinstance(gpu, dict) else stats).get("p50_ms")
    return float(value) if isinstance(value, (int, float)) else None
