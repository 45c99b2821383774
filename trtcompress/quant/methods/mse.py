"""MSE calibration: the threshold that minimises the expected squared quantization error.

For a threshold ``t`` with step ``s = t / 127`` and |x| taken at bin centres: values below
``s / 2`` round to zero (error ``x**2``), values up to ``t`` carry uniform rounding noise
(``s**2 / 12``), values above ``t`` are clipped (error ``(x - t)**2``). Prefix sums of the counts,
of ``x`` and of ``x**2`` give every candidate's error at once. Exact zeros cost nothing at any
threshold and are left out.
"""
from __future__ import annotations

import numpy as np

from ...errors import ConfigError
from ..histogram import AbsHistogram
from .registry import MethodResult, empty_result, register_method

__all__ = ["mse", "expected_mse"]


def expected_mse(counts: np.ndarray, width: float, thresholds: np.ndarray, levels: int = 127) -> np.ndarray:
    """Expected squared error (summed over values) of symmetric quantization at each threshold."""
    c = np.asarray(counts, np.float64)
    x = (np.arange(c.size) + 0.5) * width
    S0 = np.concatenate(([0.0], np.cumsum(c)))
    S1 = np.concatenate(([0.0], np.cumsum(c * x)))
    S2 = np.concatenate(([0.0], np.cumsum(c * x * x)))
    t = np.asarray(thresholds, np.float64)
    s = t / levels
    # number of bins whose centre is below s/2, and at most t
    k_zero = np.clip(np.ceil(s / (2 * width) - 0.5), 0, c.size).astype(np.int64)
    k_in = np.clip(np.floor(t / width - 0.5) + 1, 0, c.size).astype(np.int64)
    k_zero = np.minimum(k_zero, k_in)
    rounded_to_zero = S2[k_zero]
    noise = (s * s / 12.0) * (S0[k_in] - S0[k_zero])
    n_out = S0[-1] - S0[k_in]
    clipped = (S2[-1] - S2[k_in]) - 2 * t * (S1[-1] - S1[k_in]) + t * t * n_out
    return rounded_to_zero + noise + clipped


@register_method("mse")
def mse(hist: AbsHistogram, num_bins: int = 2048, start_bin: int = 1) -> MethodResult:
    """Try the upper edge of every bin (at most ``num_bins`` over ``[0, max]``) and the max itself."""
    if num_bins < 2 or start_bin < 1:
        raise ConfigError(f"need num_bins >= 2 and start_bin >= 1 (got {num_bins}, {start_bin})")
    done = empty_result(hist)
    if done:
        return done
    counts, width = hist.coarse(num_bins, drop_zeros=True)
    if counts.sum() == 0:
        return MethodResult(float(hist.amax))
    edges = np.arange(min(start_bin, counts.size), counts.size + 1) * width
    # sorted, so repeats are dropped by comparing neighbours (np.unique's first call imports numpy.ma)
    cand = np.append(np.minimum(edges, hist.amax), hist.amax)
    cand = cand[np.append(True, cand[1:] > cand[:-1])]
    err = expected_mse(counts, width, cand)
    k = int(np.argmin(err))
    return MethodResult(float(cand[k]), {"mse": float(err[k] / max(counts.sum(), 1))})
