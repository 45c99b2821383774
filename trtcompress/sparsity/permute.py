"""Input-channel permutation search that keeps more magnitude under a 2:4 mask (NVIDIA ASP's idea).

Columns (input channels) are dealt into stripes of 4; the 2:4 mask keeps, in each row, the two
largest magnitudes of each stripe. Permuting columns changes which channels share a stripe and so
how much magnitude survives. The search is ASP's bounded exhaustive step on pairs of stripes: pair
the stripes at random, and for each pair try all 35 ways of splitting its 8 columns into two
stripes, keeping the best. Pairs are disjoint, so a whole round is one vectorised numpy pass; rounds
repeat with fresh random pairings until they stop paying. The score never decreases.
"""
from __future__ import annotations

import dataclasses
import itertools

import numpy as np

from .masks import GROUP

__all__ = ["PermutationResult", "search_permutation", "kept_magnitude"]

_SUBSETS = np.array(list(itertools.combinations(range(2 * GROUP), GROUP)))  # 70 x 4
_INDEX = {tuple(s): i for i, s in enumerate(_SUBSETS)}
_COMPLEMENT = np.array([_INDEX[tuple(sorted(set(range(2 * GROUP)) - set(s)))] for s in _SUBSETS])
_SPLITS = np.flatnonzero(_SUBSETS[:, 0] == 0)  # the 35 splits: the half holding column 0
assert _SPLITS[0] == 0 and tuple(_SUBSETS[0]) == (0, 1, 2, 3)
_CHUNK_ELEMENTS = 1 << 22  # bound on rows x pairs x 70 per vectorised step (memory)


@dataclasses.dataclass(frozen=True)
class PermutationResult:
    perm: np.ndarray  # new column i is old column perm[i]
    kept_before: float  # kept magnitude (sum of |w|) with the identity order
    kept_after: float
    total: float  # sum of |w|
    rounds: int

    @property
    def improved(self) -> bool:
        return self.kept_after > self.kept_before


def _top2_of_4(a: np.ndarray, b: np.ndarray, c: np.ndarray, d: np.ndarray, inplace: bool = False) -> np.ndarray:
    """Sum of the two largest of four arrays, elementwise (a sorting network; no sort).

    With ``inplace`` the inputs are overwritten, which saves four temporaries on large blocks.
    """
    if not inplace:
        a, b, c, d = a.copy(), b.copy(), c.copy(), d.copy()
    hi1 = np.maximum(a, b)
    lo1 = np.minimum(a, b, out=a)
    hi2 = np.maximum(c, d)
    lo2 = np.minimum(c, d, out=c)
    second = np.maximum(lo1, lo2, out=lo1)
    mid = np.minimum(hi1, hi2, out=b)
    np.maximum(mid, second, out=second)
    np.maximum(hi1, hi2, out=hi1)
    return np.add(hi1, second, out=hi1)


def kept_magnitude(mag: np.ndarray, perm: np.ndarray | None = None) -> float:
    """Magnitude a 2:4 mask keeps in ``mag`` [rows, C] with columns in order ``perm``."""
    m = mag if perm is None else mag[:, perm]
    g = m.reshape(m.shape[0], -1, GROUP)
    return float(_top2_of_4(g[..., 0], g[..., 1], g[..., 2], g[..., 3]).sum(dtype=np.float64))


def _subset_scores(mag: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """[pairs, 70]: kept magnitude of every 4-subset of each pair's 8 columns, summed over rows."""
    rows, pairs = mag.shape[0], cols.shape[0]
    out = np.empty((pairs, len(_SUBSETS)), dtype=np.float64)
    step = max(1, _CHUNK_ELEMENTS // max(1, rows * len(_SUBSETS)))
    for start in range(0, pairs, step):
        block = mag[:, cols[start : start + step]]  # rows x p x 8
        parts = [block[:, :, _SUBSETS[:, i]] for i in range(GROUP)]  # 4 x (rows x p x 70)
        out[start : start + step] = _top2_of_4(*parts, inplace=True).sum(axis=0)
    return out


def search_permutation(
    mag: np.ndarray,
    max_rounds: int = 20,
    patience: int = 3,
    tolerance: float = 1e-5,
    max_rows: int = 256,
    seed: int = 0,
) -> PermutationResult:
    """Search a column order of ``mag`` ([rows, C], magnitudes, C a multiple of 4).

    Rounds run on at most ``max_rows`` rows drawn at random (the score is a sum over rows, so a
    sample ranks splits almost as well at a fraction of the cost); the result is scored on all rows
    and never worse than the identity. Stops after ``max_rounds`` rounds, or after ``patience``
    rounds in a row whose gain is below ``tolerance`` times the total. Deterministic for a ``seed``.
    """
    full = np.abs(np.asarray(mag, dtype=np.float32))
    rows, c = full.shape
    if c % GROUP:
        raise ValueError(f"{c} columns is not a multiple of {GROUP}")
    perm = np.arange(c)
    before = kept_magnitude(full)
    total_all = float(full.sum(dtype=np.float64))
    stripes = c // GROUP
    if stripes < 2 or total_all == 0.0:
        return PermutationResult(perm, before, before, total_all, 0)
    rng = np.random.default_rng(seed)
    mag = full[np.sort(rng.choice(rows, max_rows, replace=False))] if rows > max_rows else full
    total = float(mag.sum(dtype=np.float64))
    quiet, rounds = 0, 0
    for rounds in range(1, max_rounds + 1):
        order = rng.permutation(stripes)
        pairs = order[: 2 * (stripes // 2)].reshape(-1, 2)
        stripe_cols = perm.reshape(stripes, GROUP)
        cols = np.concatenate([stripe_cols[pairs[:, 0]], stripe_cols[pairs[:, 1]]], axis=1)  # p x 8
        scores = _subset_scores(mag, cols)
        split = scores[:, _SPLITS] + scores[:, _COMPLEMENT[_SPLITS]]  # p x 35
        best = split.argmax(axis=1)
        gain = split[np.arange(len(best)), best] - split[:, 0]
        better = gain > 1e-7 * max(total, 1e-30) / stripes
        if better.any():
            chosen = _SPLITS[best[better]]
            sel = cols[better]
            a = np.take_along_axis(sel, _SUBSETS[chosen], axis=1)
            b = np.take_along_axis(sel, _SUBSETS[_COMPLEMENT[chosen]], axis=1)
            stripe_cols = stripe_cols.copy()
            stripe_cols[pairs[better, 0]] = a
            stripe_cols[pairs[better, 1]] = b
            perm = stripe_cols.reshape(-1)
        round_gain = float(gain[better].sum()) if better.any() else 0.0
        quiet = quiet + 1 if round_gain < tolerance * total else 0
        if quiet >= patience:
            break
    after = kept_magnitude(full, perm)
    if after <= before:  # a sample can mislead; never return a worse order than the identity
        perm, after = np.arange(c), before
    return PermutationResult(perm, before, after, total_all, rounds)
