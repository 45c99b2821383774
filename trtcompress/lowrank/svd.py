"""Truncated SVD of a weight matrix, exact or randomised (Halko, Martinsson and Tropp 2011).

A :class:`Spectrum` holds the leading singular triplets of a matrix ``M`` (``out x in``) and its
total energy ``||M||_F^2``, which is exact whatever the method. When a caller asks for more
triplets than a randomised decomposition computed, the spectrum completes itself with an exact
SVD, so rank choice never works from a truncated list without knowing it.
"""
from __future__ import annotations

import dataclasses
import time

import numpy as np

from ..errors import ConfigError

__all__ = ["Spectrum", "randomized_svd", "exact_svd", "SVD_METHODS"]

SVD_METHODS = ("auto", "exact", "randomized")


def exact_svd(m: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Thin SVD in float64 (LAPACK gesdd): ``m = u @ diag(s) @ vt``."""
    u, s, vt = np.linalg.svd(np.asarray(m, dtype=np.float64), full_matrices=False)
    return u, s, vt


def randomized_svd(
    m: np.ndarray, k: int, oversample: int = 10, power_iters: int = 2, seed: int = 0
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Leading ``k`` singular triplets by a randomised range finder with power iterations.

    Costs O(m n (k + p)) per pass instead of O(m n min(m, n)); power iterations (each
    re-orthonormalised) sharpen a slowly decaying spectrum.
    """
    a = np.asarray(m, dtype=np.float64)
    rows, cols = a.shape
    ell = min(k + oversample, rows, cols)
    rng = np.random.default_rng(seed)
    omega = rng.standard_normal((cols, ell))
    q, _ = np.linalg.qr(a @ omega)
    for _ in range(power_iters):
        z, _ = np.linalg.qr(a.T @ q)
        q, _ = np.linalg.qr(a @ z)
    b = q.T @ a  # ell x cols
    ub, s, vt = np.linalg.svd(b, full_matrices=False)
    u = q @ ub
    return u[:, :k], s[:k], vt[:k]


@dataclasses.dataclass
class Spectrum:
    """Singular triplets of ``matrix`` computed lazily, extended on demand.

    ``method`` "auto" uses the randomised SVD when the smaller side is at least ``randomized_min_dim``
    and the triplets asked for are at most a quarter of it (where it is several times faster),
    the exact SVD otherwise.
    """

    matrix: np.ndarray
    method: str = "auto"
    randomized_min_dim: int = 1024
    oversample: int = 10
    power_iters: int = 2
    seed: int = 0

    def __post_init__(self) -> None:
        if self.method not in SVD_METHODS:
            raise ConfigError(f"svd method {self.method!r} is not one of {', '.join(SVD_METHODS)}")
        self.matrix = np.asarray(self.matrix, dtype=np.float64)
        self.total_energy = float(np.sum(self.matrix**2))
        self.u = np.zeros((self.matrix.shape[0], 0))
        self.s = np.zeros(0)
        self.vt = np.zeros((0, self.matrix.shape[1]))
        self.complete = False
        self.seconds = 0.0
        self.used = "none"

    @property
    def full_rank(self) -> int:
        return min(self.matrix.shape)

    def ensure(self, k: int) -> None:
        """Make at least ``min(k, full_rank)`` leading triplets available."""
        k = min(max(k, 1), self.full_rank)
        if k <= len(self.s) or self.complete:
            return
        t0 = time.perf_counter()
        if self._randomized_pays(k):
            self.u, self.s, self.vt = randomized_svd(self.matrix, k, self.oversample, self.power_iters, self.seed)
            self.used = "randomized"
        else:
            self.u, self.s, self.vt = exact_svd(self.matrix)
            self.complete = True
            self.used = "exact"
        self.seconds += time.perf_counter() - t0

    def _randomized_pays(self, k: int) -> bool:
        if self.method == "exact":
            return False
        if self.method == "randomized":
            return k < self.full_rank
        return self.full_rank >= self.randomized_min_dim and 4 * (k + self.oversample) <= self.full_rank

    def singular_values(self, k: int) -> np.ndarray:
        self.ensure(k)
        return self.s[:k]

    def energy(self, r: int) -> float:
        """Fraction of ``||M||_F^2`` kept by the leading ``r`` triplets."""
        if self.total_energy == 0.0:
            return 1.0
        s = self.singular_values(r)
        return float(np.sum(s[:r] ** 2) / self.total_energy)

    def rank_for_energy(self, fraction: float, limit: int) -> int | None:
        """Smallest rank keeping ``fraction`` of the energy, or None when it exceeds ``limit``.

        Starts from an eighth of the full rank (cheap with the randomised SVD) and completes the
        spectrum only when the target lies beyond it.
        """
        if self.total_energy == 0.0:
            return 1
        guess = max(1, min(limit, self.full_rank // 8))
        for k in (guess, limit):
            self.ensure(k)
            s = self.s[:limit]  # all that is known, up to the limit
            cum = np.cumsum(s**2) / self.total_energy
            hit = np.nonzero(cum >= fraction - 1e-12)[0]
            if len(hit):
                return int(hit[0]) + 1
            if self.complete or len(s) >= limit:
                break
        return None

    def factors(self, r: int) -> tuple[np.ndarray, np.ndarray]:
        """``(p, q)`` with ``p @ q`` the best rank-``r`` approximation; ``p`` is out x r, ``q`` r x in.

        The singular values are split as square roots between the factors, so both have the same
        scale (better conditioned for fine-tuning and for low-precision storage).
        """
        self.ensure(r)
        root = np.sqrt(self.s[:r])
        return self.u[:, :r] * root[None, :], root[:, None] * self.vt[:r]
