"""The max and percentile methods."""
from __future__ import annotations

import numpy as np

from ...errors import ConfigError
from ..histogram import AbsHistogram
from .registry import MethodResult, empty_result, register_method

__all__ = ["max_method", "percentile"]


@register_method("max")
def max_method(hist: AbsHistogram) -> MethodResult:
    """The exact largest |x| seen: nothing is clipped."""
    return empty_result(hist) or MethodResult(float(hist.amax))


@register_method("percentile")
def percentile(hist: AbsHistogram, percentile: float = 99.99) -> MethodResult:
    """The upper edge of the bin where the cumulative share of |x| (zeros included) reaches ``percentile``."""
    if not 0 < percentile <= 100:
        raise ConfigError(f"percentile must be in (0, 100], got {percentile}")
    done = empty_result(hist)
    if done:
        return done
    cum = np.cumsum(hist.counts)
    need = cum[-1] * (percentile / 100.0)
    b = int(np.searchsorted(cum, need, side="left"))
    amax = min((b + 1) * hist.bin_width, hist.amax)
    return MethodResult(float(amax), {"bin": b})
