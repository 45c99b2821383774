"""2:4 masks in numpy: in every group of 4 consecutive weights along the reduction axis, keep the 2
largest magnitudes.

The reduction axis is the one a sparse Tensor Core groups along: input channels C of a Conv weight
K x C x R x S (one group per k, r, s and 4 consecutive channels), K of a MatMul weight [K, N].
Masks are vectorised over strided views of the axis (the k-th member of every group), in blocks.
"""
from __future__ import annotations

import numpy as np

__all__ = [
    "GROUP",
    "KEEP",
    "mask_2to4",
    "prune_2to4",
    "is_2to4",
    "groups_violating",
    "retained_magnitude",
    "zero_fraction",
    "as_rows",
]

GROUP = 4  # consecutive weights per group along the reduction axis
KEEP = 2  # weights kept per group


def _grouped(a: np.ndarray, axis: int) -> np.ndarray:
    """View ``a`` with ``axis`` moved last and split into groups: [..., C/4, 4]."""
    axis = axis % a.ndim
    c = a.shape[axis]
    if c % GROUP:
        raise ValueError(f"reduction axis {axis} has {c} entries, not a multiple of {GROUP}")
    moved = np.moveaxis(a, axis, -1)
    return moved.reshape(moved.shape[:-1] + (c // GROUP, GROUP))


def mask_2to4(weights: np.ndarray, axis: int) -> np.ndarray:
    """Boolean mask (True = keep) with exactly 2 kept entries per group of 4 along ``axis``.

    Ties keep the lower index, so the mask is a deterministic function of |w|: an entry is kept
    when fewer than 2 others in its group come before it (larger, or equal at a lower index).
    Worked in blocks with the 12 comparisons a group needs, never sorting or moving the axis: a
    2 GB weight costs a few seconds and block-sized temporaries.
    """
    w = np.asarray(weights)
    if not np.issubdtype(w.dtype, np.number):
        raise TypeError(f"weights must be numeric, got {w.dtype}")
    axis %= w.ndim
    if w.shape[axis] % GROUP:
        raise ValueError(f"reduction axis {axis} has {w.shape[axis]} entries, not a multiple of {GROUP}")
    keep = np.empty(w.shape, dtype=bool)
    for block in _blocks(w.shape, axis):
        _mask_block(w[block], keep[block], axis)
    return keep


BLOCK = 1 << 22  # elements worked on at a time


def _blocks(shape: tuple[int, ...], axis: int) -> list[tuple[slice, ...]]:
    """Slices of about BLOCK elements along an axis other than ``axis`` (the whole array if none)."""
    other = next((d for d in range(len(shape)) if d != axis), None)
    if other is None or not all(shape):
        return [tuple(slice(None) for _ in shape)]
    step = max(1, BLOCK * shape[other] // int(np.prod(shape)))
    return [tuple(slice(i, i + step) if d == other else slice(None) for d in range(len(shape))) for i in range(0, shape[other], step)]


def _mask_block(w: np.ndarray, keep: np.ndarray, axis: int) -> None:
    # float32 holds every value of these types exactly, so their order is kept; others go to float64
    exact32 = w.dtype == np.float32 or w.dtype.itemsize <= 2
    member = [tuple(slice(k, None, GROUP) if d == axis else slice(None) for d in range(w.ndim)) for k in range(GROUP)]
    mag = [np.abs(w[m].astype(np.float32 if exact32 else np.float64)) for m in member]
    if not all(np.isfinite(a).all() for a in mag):
        raise ValueError("weights contain NaN or Inf; a 2:4 mask needs finite weights")
    for i in range(GROUP):
        before = np.zeros(mag[i].shape, dtype=np.uint8)
        for j in range(GROUP):
            if j != i:
                before += mag[j] >= mag[i] if j < i else mag[j] > mag[i]
        keep[member[i]] = before < KEEP


def prune_2to4(weights: np.ndarray, axis: int) -> tuple[np.ndarray, np.ndarray]:
    """Return (pruned weights, mask); the pruned array keeps the input dtype."""
    mask = mask_2to4(weights, axis)
    return np.where(mask, weights, np.zeros((), dtype=np.asarray(weights).dtype)), mask


def is_2to4(weights: np.ndarray, axis: int, zero: float | int = 0) -> bool:
    """True when every group of 4 along ``axis`` holds at least 2 entries equal to ``zero``."""
    w = np.asarray(weights)
    if w.shape[axis % w.ndim] % GROUP:
        return False
    return groups_violating(w, axis, zero) == 0


def groups_violating(weights: np.ndarray, axis: int, zero: float | int = 0) -> int:
    """Number of groups of 4 along ``axis`` with more than 2 entries different from ``zero``."""
    g = _grouped(np.asarray(weights), axis)
    nonzero = np.count_nonzero(g != zero, axis=-1)
    return int(np.count_nonzero(nonzero > GROUP - KEEP))


def retained_magnitude(weights: np.ndarray, mask: np.ndarray) -> float:
    """Share of the L1 magnitude that the mask keeps (1.0 for an all-zero tensor)."""
    w, m = np.ravel(weights), np.ravel(mask)
    total = kept = 0.0
    for start in range(0, w.size, BLOCK):
        mag = np.abs(w[start : start + BLOCK].astype(np.float64))
        total += float(mag.sum())
        kept += float(mag[m[start : start + BLOCK]].sum())
    return kept / total if total > 0 else 1.0


def zero_fraction(weights: np.ndarray, zero: float | int = 0) -> float:
    w = np.ravel(weights)
    zeros = sum(int(np.count_nonzero(w[s : s + BLOCK] == zero)) for s in range(0, w.size, BLOCK))
    return zeros / w.size if w.size else 0.0


def as_rows(weights: np.ndarray, axis: int) -> np.ndarray:
    """[rows, C]: every row is one line along the reduction axis (for permutation search)."""
    w = np.asarray(weights)
    moved = np.moveaxis(w, axis % w.ndim, -1)
    return moved.reshape(-1, moved.shape[-1])
