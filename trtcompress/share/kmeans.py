"""One-dimensional k-means for weight sharing (Deep Compression, Han et al. 2016, section 3).

Lloyd's iterations on the sorted weights: in 1-D each cluster is an interval between midpoints of
neighbouring centroids, so an assignment is a ``searchsorted`` of k-1 boundaries into the sorted
values and each update reads two cumulative sums: O(k log n) per iteration after one sort, which
is what makes per-output-channel clustering of a whole model cheap.

Exact zeros (pruned weights) get their own centroid 0.0 at index 0 and stay zero, so 2:4 or
unstructured sparsity survives sharing; the other k-1 centroids cluster the non-zero weights.
Initialisations are the paper's three: ``linear`` (evenly spaced over [min, max], the paper's
best, since it keeps the rare large weights), ``density`` (evenly spaced over the CDF) and
``kmeans++`` (the paper's "random", made D^2-weighted; deterministic for a seed).
"""
from __future__ import annotations

from typing import Callable

import numpy as np

__all__ = ["INITS", "kmeans_1d", "kmeans_rows"]

_KPP_SAMPLE = 65536  # kmeans++ seeds from at most this many weights (it is O(n k))


def _linear(xs: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    return np.linspace(xs[0], xs[-1], k)


def _density(xs: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    return np.quantile(xs, (np.arange(k) + 0.5) / k)


def _kmeanspp(xs: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    sample = xs if xs.size <= _KPP_SAMPLE else xs[np.sort(rng.choice(xs.size, _KPP_SAMPLE, replace=False))]
    centres = [sample[rng.integers(sample.size)]]
    d2 = (sample - centres[0]) ** 2
    for _ in range(1, k):
        total = d2.sum()
        if total <= 0:
            break
        c = sample[np.searchsorted(np.cumsum(d2), rng.random() * total, side="right").clip(0, sample.size - 1)]
        centres.append(c)
        d2 = np.minimum(d2, (sample - c) ** 2)
    return np.sort(np.array(centres))


INITS: dict[str, Callable[[np.ndarray, int, np.random.Generator], np.ndarray]] = {
    "linear": _linear,
    "density": _density,
    "kmeans++": _kmeanspp,
}


def _lloyd(xs: np.ndarray, centres: np.ndarray, iters: int) -> np.ndarray:
    """Lloyd's iterations on sorted ``xs``; an emptied cluster keeps its centroid (dropped at the end)."""
    csum = np.concatenate(([0.0], np.cumsum(xs)))
    c = np.unique(centres)
    for _ in range(iters):
        ends = np.searchsorted(xs, (c[1:] + c[:-1]) / 2)  # cluster j is xs[starts[j]:ends[j]]
        starts = np.concatenate(([0], ends))
        ends = np.concatenate((ends, [xs.size]))
        counts = ends - starts
        new = np.where(counts > 0, (csum[ends] - csum[starts]) / np.maximum(counts, 1), c)
        if np.array_equal(new, c):
            break
        c = np.unique(new)  # stays sorted; merged centroids shrink k
    ends = np.searchsorted(xs, (c[1:] + c[:-1]) / 2)
    counts = np.diff(np.concatenate(([0], ends, [xs.size])))
    return c[counts > 0]


def kmeans_1d(values: np.ndarray, k: int, init: str = "linear", iters: int = 30, seed: int = 0,
              keep_zeros: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Cluster ``values`` into at most ``k`` centroids: ``(codebook float64 [<=k], indices uint8/uint16
    shaped like values)`` with ``codebook[indices]`` the shared weights. With ``keep_zeros`` and any
    exact zero present, ``codebook[0] == 0.0`` and exactly the zeros map to it."""
    if k < 1:
        raise ValueError(f"k must be at least 1, got {k}")
    x = np.asarray(values, dtype=np.float64).ravel()
    zero = (x == 0) if keep_zeros else np.zeros(x.shape, bool)
    has_zero = bool(zero.any())
    xs = np.sort(x[~zero])
    k_nz = k - 1 if has_zero else k
    if xs.size == 0 or k_nz < 1:  # nothing but zeros, or k == 1 with zeros: one centroid 0
        centres, codebook = np.zeros(0), np.zeros(1)
    else:
        uniq = np.unique(xs)
        if uniq.size <= k_nz:
            centres = uniq
        else:
            centres = _lloyd(xs, INITS[init](xs, k_nz, np.random.default_rng(seed)), iters)
        codebook = np.concatenate(([0.0], centres)) if has_zero else centres
    idx = np.zeros(x.shape, np.uint8 if codebook.size <= 256 else np.uint16)
    if centres.size:
        idx[~zero] = np.searchsorted((centres[1:] + centres[:-1]) / 2, x[~zero]) + (1 if has_zero else 0)
    return codebook, idx.reshape(np.shape(values))


def kmeans_rows(rows: np.ndarray, k: int, init: str = "linear", iters: int = 30, seed: int = 0,
                keep_zeros: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """k-means of each row of a 2-D array on its own: ``(codebooks [rows, k], indices like rows)``.

    With ``keep_zeros`` and a zero anywhere, every row's ``codebook[0]`` is 0.0 (one layout for the
    whole layer). ``linear`` and ``density`` run all rows at once: each row is mapped to [0, 1]
    and shifted by twice its row number, so one sorted array and one ``searchsorted`` serve every
    row (a Python loop over 1 000 rows took 3.5 s per million weights); ``kmeans++`` loops.
    """
    x = np.asarray(rows, dtype=np.float64)
    n_rows = x.shape[0]
    zero = (x == 0) if keep_zeros else np.zeros(x.shape, bool)
    has_zero = bool(zero.any())
    k_nz = k - 1 if has_zero else k
    idx = np.zeros(x.shape, np.uint8 if k <= 256 else np.uint16)
    books = np.zeros((n_rows, k))
    if k_nz < 1 or zero.all():
        return books, idx
    if init not in ("linear", "density"):
        for r in range(n_rows):
            book, i = kmeans_1d(x[r], k, init, iters, seed + r, keep_zeros)
            if has_zero and book[0] != 0.0:  # a row without zeros: keep the layer's layout
                book, i = np.concatenate(([0.0], book))[:k], np.minimum(i.astype(np.int64) + 1, k - 1).astype(idx.dtype)
            books[r, :book.size], books[r, book.size:] = book, book[-1]
            idx[r] = i
        return books, idx
    big = np.where(zero, np.inf, x).min(axis=1)
    lo = np.where(np.isfinite(big), big, 0.0)
    hi = np.where(zero, -np.inf, x).max(axis=1)
    span = np.where(hi > lo, hi - lo, 1.0)
    key = (x - lo[:, None]) / span[:, None] + 2.0 * np.arange(n_rows)[:, None]
    xs = np.sort(key[~zero])
    bounds = np.searchsorted(xs, 2.0 * np.arange(n_rows + 1) - 0.5)  # row r is xs[bounds[r]:bounds[r + 1]]
    csum = np.concatenate(([0.0], np.cumsum(xs)))
    offs = 2.0 * np.arange(n_rows)[:, None]
    if init == "linear":
        c = np.linspace(0.0, 1.0, k_nz)[None, :] + offs
    else:  # density: the row's quantiles
        length = np.maximum(bounds[1:] - bounds[:-1], 1)
        pos = bounds[:-1, None] + ((np.arange(k_nz) + 0.5) / k_nz * (length[:, None] - 1)).astype(np.int64)
        c = np.where((bounds[1:] > bounds[:-1])[:, None], xs[np.minimum(pos, xs.size - 1)], offs)
    for _ in range(iters):
        mids = (c[:, 1:] + c[:, :-1]) / 2
        cut = np.searchsorted(xs, mids)
        starts = np.concatenate((bounds[:-1, None], cut), axis=1)
        ends = np.concatenate((cut, bounds[1:, None]), axis=1)
        counts = ends - starts
        new = np.sort(np.where(counts > 0, (csum[ends] - csum[starts]) / np.maximum(counts, 1), c), axis=1)
        if np.array_equal(new, c):
            break
        c = new
    mids = ((c[:, 1:] + c[:, :-1]) / 2).ravel()
    pos = np.searchsorted(mids, key) - (k_nz - 1) * np.arange(n_rows)[:, None]
    first = 1 if has_zero else 0
    idx[~zero] = (np.clip(pos, 0, k_nz - 1) + first)[~zero]
    books[:, first:] = (c - offs) * span[:, None] + lo[:, None]
    return books, idx
