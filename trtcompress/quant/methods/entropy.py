"""Entropy calibration: TensorRT's ``IInt8EntropyCalibrator2`` threshold search, vectorised.

For every candidate clip bin ``i`` (``start_bin..len(counts)``) the reference distribution P is
``counts[:i]`` with the tail ``sum(counts[i:])`` added to its last bin; the candidate Q merges
``counts[:i]`` into ``num_quantized_bins`` levels (bin ``b`` goes to level ``b * levels // i``, the
proportional split NVIDIA's own Python calibrators use) and spreads each level's mass evenly over
its non-empty bins. The chosen ``i`` minimises KL(P || Q) (ties: the largest ``i``) and the
threshold is ``(i + 0.5) * bin_width``.

The naive search costs ~2M bin operations per tensor. Here KL is expanded as

    KL = sum_b P_b log P_b - sum_b P_b log Q_b

whose first sum comes from prefix sums of ``c log c`` and whose second sum is, per candidate, a
sum over 128 levels of ``L_j log(L_j / n_j)`` (level mass ``L_j`` and non-empty bin count ``n_j``
from prefix sums at the level boundaries): O(levels) per candidate, all candidates at once.
"""
from __future__ import annotations

import functools

import numpy as np

from ...errors import ConfigError
from ..histogram import AbsHistogram
from .registry import MethodResult, empty_result, register_method

__all__ = ["kl_divergences", "entropy_clip_bin", "entropy", "saturated", "SMOOTHING"]

# Q is zero where P is not only in P's last bin (that bin is empty, the tail is not): Q there is
# smoothed to this many counts (the smoothing constant of MXNet's and ONNX Runtime's calibrators).
SMOOTHING = 1e-4

# Zero handling: exact zeros are represented exactly by every symmetric scale, so they carry no
# information about the threshold; a ReLU network's spike of zeros dominates P and Q otherwise.
ZERO_MODES = ("keep", "drop", "damp")


def _levels(nb: int, levels: int, start: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Candidates ``start..nb`` and, per candidate, its levels' first and end bins and the level of
    its last bin. A candidate's levels do not depend on ``nb``, so one table (built for 2048 bins,
    the methods' default) serves every tensor as a view of its first rows."""
    cand, lo, hi, last = _level_table(levels, start, max(nb, 2048))
    n = nb - start + 1
    return cand[:n], lo[:n], hi[:n], last[:n]


@functools.lru_cache(maxsize=8)
def _level_table(levels: int, start: int, nb: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    cand = np.arange(start, nb + 1, dtype=np.int64)
    j = np.arange(levels + 1, dtype=np.int64)
    # level j of candidate i holds bins [ceil(j*i/levels), ceil((j+1)*i/levels))
    bounds = (cand[:, None] * j[None, :] + levels - 1) // levels
    out = cand, np.ascontiguousarray(bounds[:, :-1]), np.ascontiguousarray(bounds[:, 1:]), ((cand - 1) * levels) // cand
    for a in out:
        a.flags.writeable = False  # shared by every call
    return out


def kl_divergences(counts: np.ndarray, num_quantized_bins: int = 128, start_bin: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Candidates ``i`` and KL(P_i || Q_i) for each, as two arrays (``inf`` where undefined)."""
    c = np.asarray(counts, np.float64)
    nb = c.size
    levels = int(num_quantized_bins)
    start = levels if start_bin is None else max(int(start_bin), 1)
    if nb == 0:
        return np.zeros(0, np.int64), np.zeros(0)
    if nb <= start:
        return np.array([nb]), np.array([0.0])
    cand, lo, hi, jl = _levels(nb, levels, start)
    nz = c > 0
    C = np.concatenate(([0.0], np.cumsum(c)))
    Z = np.concatenate(([0], np.cumsum(nz)))
    clogc = np.zeros(nb)
    clogc[nz] = c[nz] * np.log(c[nz])
    CL = np.concatenate(([0.0], np.cumsum(clogc)))
    total = C[-1]

    mass = C[hi]
    mass -= C[lo]
    nonempty = Z[hi]
    nonempty -= Z[lo]
    with np.errstate(divide="ignore", invalid="ignore"):
        level_terms = mass / nonempty
        np.log(level_terms, out=level_terms)
        level_terms *= mass
    level_terms[np.isnan(level_terms)] = 0.0  # an empty level (0 * log(0/0)) adds nothing
    qlog_sum = level_terms.sum(axis=1)  # sum over b < i of c_b log q_b

    last = cand - 1
    c_last = c[last]
    tail = total - C[cand]
    p_last = c_last + tail
    c_i = C[cand]  # mass of Q before normalisation
    pre = C[last]  # mass of bins before the last
    rows = np.arange(cand.size)
    with np.errstate(divide="ignore", invalid="ignore"):
        q_last = mass[rows, jl] / nonempty[rows, jl]
        log_q_last = np.where(c_last > 0, np.log(q_last), np.log(SMOOTHING))
        log_total = np.log(total)
        log_ci = np.log(c_i)
        # bins before the last: P_b = c_b / N, Q_b = q_b / C_i
        head = CL[last] - pre * log_total - (qlog_sum - np.where(c_last > 0, c_last * log_q_last, 0.0)) + pre * log_ci
        # the last bin (tail folded in)
        p_log_p = np.where(p_last > 0, p_last * np.log(p_last), 0.0)
        last_term = np.where(p_last > 0, p_log_p - p_last * log_total - p_last * (log_q_last - log_ci), 0.0)
        kl = (head + last_term) / total
    kl = np.where(c_i > 0, kl, np.inf)
    return cand, kl


def entropy_clip_bin(counts: np.ndarray, num_quantized_bins: int = 128, start_bin: int | None = None) -> tuple[int, float]:
    """The clip bin ``i`` TensorRT's search picks (smallest KL, ties to the largest ``i``) and its KL."""
    cand, kl = kl_divergences(counts, num_quantized_bins, start_bin)
    if cand.size == 0:
        return 0, 0.0
    k = kl.size - 1 - int(np.argmin(kl[::-1]))
    return int(cand[k]), float(kl[k])


def saturated(hist: AbsHistogram, min_count: int = 32, ratio: float = 32.0) -> bool:
    """True when max|x| is a saturation level: a spike of values sits exactly at the top.

    A Clip/ReLU6 output (or any op that saturates) puts many values at its bound; a natural tail
    puts one or two values in its last bin. Clipping below a saturation level moves every
    saturated activation, which the KL search does not weigh (it sees one spike bin).
    """
    top = hist.used_bins() - 1
    if top < 1:
        return False
    spike = int(hist.counts[top])
    below = hist.counts[max(0, top - 64) : top]
    below = below[below > 0] if top > 64 else below[1:]
    level = float(below.mean()) if below.size else 0.0
    return spike >= min_count and spike >= ratio * max(level, 1.0)


@register_method("entropy")
def entropy(
    hist: AbsHistogram,
    num_bins: int = 2048,
    num_quantized_bins: int = 128,
    start_bin: int | None = None,
    zeros: str = "drop",
    keep_saturation: bool = True,
    min_values: int = 2048,
) -> MethodResult:
    """TensorRT's entropy threshold on (at most) ``num_bins`` bins over ``[0, max|x|]``.

    ``zeros``: ``drop`` (default) leaves exact zeros out of the search, ``keep`` counts them in
    bin 0 as TensorRT's description does (a ReLU network's spike of zeros then drives the search
    to its smallest candidate, 128/2048 of the range), ``damp`` sets bin 0 to bin 1 (Model
    Optimizer). ``keep_saturation``: a tensor whose maximum is a saturation level (ReLU6/Clip
    outputs, see :func:`saturated`) keeps its maximum. The threshold never exceeds max|x|.
    ``min_values``: a tensor seen with fewer non-zero values keeps its maximum: its histogram is too
    sparse for the search to tell a tail from noise (a squeeze-excite Conv sees one value per channel
    and sample; PP-OCR's classifier had one clipped at 0.78 where its values reach 1.9, and the CPU
    form, which stores that output in 8 bits, lost its top-1: 62% agreement with FP32).
    """
    if zeros not in ZERO_MODES:
        raise ConfigError(f"zeros must be one of {', '.join(ZERO_MODES)}, got {zeros!r}")
    if num_bins < num_quantized_bins or num_quantized_bins < 2:
        raise ConfigError(f"need num_bins >= num_quantized_bins >= 2 (got {num_bins}, {num_quantized_bins})")
    done = empty_result(hist)
    if done:
        return done
    if keep_saturation and saturated(hist):
        return MethodResult(float(hist.amax), {"saturated": True})
    counts, width = hist.coarse(num_bins, drop_zeros=zeros == "drop")
    if zeros == "damp" and counts.size > 1:
        counts[0] = counts[1]
    if counts.sum() == 0:  # only zeros (dropped) and nothing else
        return MethodResult(hist.amax, {"bin": counts.size, "bins": int(counts.size)})
    if counts.sum() < min_values:
        return MethodResult(float(hist.amax), {"few_values": int(counts.sum())})
    i, kl = entropy_clip_bin(counts, num_quantized_bins, start_bin)
    amax = min((i + 0.5) * width, hist.amax)
    return MethodResult(float(amax), {"bin": i, "bins": int(counts.size), "kl": kl})
