"""Histograms of |x| on a power-of-two range grid, so that merging is exact.

TensorRT histograms |x| over ``[0, max]`` and re-bins old counts whenever a later batch raises
the maximum; the result then depends on batch size and order. Here the range is always a power
of two ``R = 2**exponent`` strictly above the maximum seen, with ``bins`` (a power of two) equal
bins. ``|x| * 2**(log2(bins) - exponent)`` is an exact float operation, so the bin of a value is
exact; when the range doubles, bin ``b`` becomes ``b // 2`` (exact integer regrouping). Adding
batches in any order or grouping, or merging shards, gives the same integer counts.
"""
from __future__ import annotations

import dataclasses
import math

import numpy as np

from . import _kernels

__all__ = ["AbsHistogram", "DEFAULT_BINS", "regroup"]

# 16384 bins on [0, 2**e): the data's maximum lies in the top octave, so between 8193 and 16384
# bins cover [0, max]; methods regroup these into at most 2048 bins like TensorRT's.
DEFAULT_BINS = 1 << 14

# Scaling by 2**shift is exact in float32 while 2**shift itself is a normal float32; outside
# this window (ranges near 1e-36 or 1e36) the values are scaled in float64 instead.
_F32_EXP_RANGE = (-120, 120)


@dataclasses.dataclass
class AbsHistogram:
    """Counts of |x| on ``[0, 2**exponent)`` in ``bins`` equal bins, plus exact side statistics.

    ``counts`` includes exact zeros in bin 0; ``zeros`` says how many of them there are.
    ``nonfinite`` counts NaN/Inf values, which are left out of everything else.
    """

    bins: int = DEFAULT_BINS
    exponent: int | None = None  # None until a non-zero finite value has been seen
    counts: np.ndarray | None = None
    total: int = 0  # finite values seen (zeros included)
    zeros: int = 0
    nonfinite: int = 0
    amax: float = 0.0  # exact max |x| over finite values
    lo: float = math.inf  # exact min and max of the finite values (signed; inf / -inf while empty)
    hi: float = -math.inf

    def __post_init__(self) -> None:
        if self.bins < 2 or self.bins & (self.bins - 1):
            raise ValueError(f"bins must be a power of two >= 2, got {self.bins}")
        if self.counts is None:
            self.counts = np.zeros(self.bins, np.int64)

    @property
    def log2_bins(self) -> int:
        return self.bins.bit_length() - 1

    @property
    def range(self) -> float:
        """Upper end of the histogram range (0 while empty)."""
        return 0.0 if self.exponent is None else math.ldexp(1.0, self.exponent)

    @property
    def bin_width(self) -> float:
        return 0.0 if self.exponent is None else math.ldexp(1.0, self.exponent - self.log2_bins)

    # -- accumulation ----------------------------------------------------------------------------

    def add(self, x: np.ndarray, scratch: np.ndarray | None = None, kernel: str = "auto") -> None:
        """Count the values of ``x`` (any shape, float dtype).

        ``kernel``: ``compiled`` (one pass, releases the GIL), ``numpy`` (several vectorised
        passes; ``scratch`` is a reusable float buffer), or ``auto`` (compiled when built).
        Both give identical counts.
        """
        a = np.asarray(x)
        if a.dtype not in (np.float32, np.float64):
            a = a.astype(np.float32)
        a = np.ascontiguousarray(a).reshape(-1)
        if a.size == 0:
            return
        hi, lo = float(a.max()), float(a.min())
        if not (math.isfinite(hi) and math.isfinite(lo)):
            keep = np.isfinite(a)
            self.nonfinite += int(a.size - np.count_nonzero(keep))
            a = a[keep]
            if a.size == 0:
                return
            hi, lo = float(a.max()), float(a.min())
        self.lo, self.hi = min(self.lo, lo), max(self.hi, hi)
        m = max(hi, -lo)
        n = int(a.size)
        self.total += n
        if m == 0.0:
            self.zeros += n
            self.counts[0] += n
            return
        self.amax = max(self.amax, m)
        _, e = math.frexp(m)  # m < 2**e, strictly
        if self.exponent is None or e > self.exponent:
            self._grow(e)
        shift = self.log2_bins - self.exponent
        if a.dtype == np.float32 and not (_F32_EXP_RANGE[0] <= shift <= _F32_EXP_RANGE[1]):
            a = a.astype(np.float64)
        scale = a.dtype.type(math.ldexp(1.0, shift))
        count = _kernels.get(kernel)
        z = count(a, scale, self.counts, scratch)
        self.zeros += z

    def _grow(self, exponent: int) -> None:
        """Move to the range ``2**exponent`` (>= current), regrouping counts exactly."""
        if self.exponent is not None:
            self.counts = regroup(self.counts, exponent - self.exponent)
        self.exponent = exponent

    def merge(self, other: "AbsHistogram") -> "AbsHistogram":
        """The histogram of both data sets together (exact; commutative and associative)."""
        if other.bins != self.bins:
            raise ValueError(f"cannot merge histograms with {self.bins} and {other.bins} bins")
        exps = [e for e in (self.exponent, other.exponent) if e is not None]
        e = max(exps) if exps else None
        a = self.at_exponent(e)
        b = other.at_exponent(e)
        return AbsHistogram(
            bins=self.bins,
            exponent=e,
            counts=a + b,
            total=self.total + other.total,
            zeros=self.zeros + other.zeros,
            nonfinite=self.nonfinite + other.nonfinite,
            amax=max(self.amax, other.amax),
            lo=min(self.lo, other.lo),
            hi=max(self.hi, other.hi),
        )

    def at_exponent(self, exponent: int | None) -> np.ndarray:
        """Counts regrouped onto the range ``2**exponent`` (>= this histogram's own)."""
        if self.exponent is None or exponent is None:
            return self.counts.copy()
        return regroup(self.counts, exponent - self.exponent)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, AbsHistogram):
            return NotImplemented
        return (
            self.bins == other.bins
            and self.exponent == other.exponent
            and self.total == other.total
            and self.zeros == other.zeros
            and self.nonfinite == other.nonfinite
            and self.amax == other.amax
            and (self.lo, self.hi) == (other.lo, other.hi)
            and np.array_equal(self.counts, other.counts)
        )

    # -- views for the methods -------------------------------------------------------------------

    def used_bins(self) -> int:
        """Number of bins from 0 up to and including the one holding the maximum."""
        if self.exponent is None:
            return 0
        nz = np.flatnonzero(self.counts)
        return int(nz[-1]) + 1 if nz.size else 0

    def coarse(self, max_bins: int = 2048, drop_zeros: bool = False) -> tuple[np.ndarray, float]:
        """Counts over ``[0, max]`` regrouped into at most ``max_bins`` equal bins, and their width.

        Groups of ``g = ceil(used / max_bins)`` fine bins: between ``max_bins * (g-1)/g`` and
        ``max_bins`` bins cover the data, close to TensorRT's 2048 bins over ``[0, max]``.
        """
        used = self.used_bins()
        if used == 0:
            return np.zeros(0, np.int64), 0.0
        g = -(-used // max_bins)
        n = -(-used // g)
        c = np.zeros(n * g, np.int64)
        c[:used] = self.counts[:used]
        if drop_zeros:
            c[0] -= self.zeros
        return c.reshape(n, g).sum(axis=1), self.bin_width * g


def regroup(counts: np.ndarray, octaves: int) -> np.ndarray:
    """Counts on a range ``2**octaves`` times larger: groups of ``2**octaves`` bins summed."""
    if octaves <= 0:
        return counts.copy()
    n = counts.size
    out = np.zeros(n, np.int64)
    if octaves >= n.bit_length() - 1:
        out[0] = counts.sum()
        return out
    f = 1 << octaves
    out[: n // f] = counts.reshape(n // f, f).sum(axis=1)
    return out
