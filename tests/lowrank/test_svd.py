"""Exact and randomised truncated SVD."""
from __future__ import annotations

import numpy as np
import pytest

from trtcompress.errors import ConfigError
from trtcompress.lowrank.svd import Spectrum, exact_svd, randomized_svd


def _decaying(m: int, n: int, decay: float = 0.9, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    u, _ = np.linalg.qr(rng.standard_normal((m, min(m, n))))
    v, _ = np.linalg.qr(rng.standard_normal((n, min(m, n))))
    s = decay ** np.arange(min(m, n))
    return (u * s) @ v.T


def test_randomized_matches_exact_on_decaying_spectrum():
    a = _decaying(300, 200)
    k = 30
    _, s_exact, _ = exact_svd(a)
    u, s, vt = randomized_svd(a, k, oversample=10, power_iters=2, seed=1)
    np.testing.assert_allclose(s, s_exact[:k], rtol=1e-5)
    err = np.linalg.norm(a - (u * s) @ vt)
    optimal = np.sqrt(np.sum(s_exact[k:] ** 2))  # Eckart-Young
    assert err <= 1.01 * optimal
    # orthonormal factors
    np.testing.assert_allclose(u.T @ u, np.eye(k), atol=1e-10)


def test_randomized_on_flat_spectrum_is_near_optimal_with_power_iterations():
    a = np.random.default_rng(3).standard_normal((150, 100))
    k = 20
    _, s_exact, _ = exact_svd(a)
    u, s, vt = randomized_svd(a, k, power_iters=3, seed=0)
    err = np.linalg.norm(a - (u * s) @ vt)
    assert err <= 1.05 * np.sqrt(np.sum(s_exact[k:] ** 2))


def test_spectrum_auto_picks_randomized_only_where_it_pays():
    big = Spectrum(_decaying(300, 280, 0.95), method="auto", randomized_min_dim=256)
    big.ensure(40)
    assert big.used == "randomized" and not big.complete and len(big.s) == 40
    big.ensure(150)  # beyond a quarter of the rank: exact
    assert big.used == "exact" and big.complete
    small = Spectrum(_decaying(60, 50), method="auto")
    small.ensure(5)
    assert small.used == "exact"


def test_energy_and_rank_for_energy():
    a = _decaying(80, 60, 0.8)
    sp = Spectrum(a, method="exact")
    s = np.linalg.svd(a, compute_uv=False)
    cum = np.cumsum(s**2) / np.sum(s**2)
    r = sp.rank_for_energy(0.99, limit=60)
    assert cum[r - 1] >= 0.99 > cum[r - 2]
    assert sp.energy(r) == pytest.approx(cum[r - 1])
    assert sp.rank_for_energy(0.99, limit=r - 1) is None


def test_rank_for_energy_completes_a_randomized_spectrum():
    a = _decaying(300, 280, 0.98)  # slow decay: the target lies beyond the first eighth
    sp = Spectrum(a, method="auto", randomized_min_dim=256)
    r = sp.rank_for_energy(0.99, limit=140)
    s = np.linalg.svd(a, compute_uv=False)
    cum = np.cumsum(s**2) / np.sum(s**2)
    assert r == int(np.searchsorted(cum, 0.99 - 1e-12)) + 1
    assert sp.complete


def test_factors_split_singular_values_evenly():
    a = _decaying(40, 30, 0.7)
    p, q = Spectrum(a, method="exact").factors(10)
    np.testing.assert_allclose(np.linalg.norm(p, axis=0), np.linalg.norm(q, axis=1), rtol=1e-10)
    u, s, vt = np.linalg.svd(a)
    np.testing.assert_allclose(p @ q, (u[:, :10] * s[:10]) @ vt[:10], atol=1e-12)


def test_full_rank_factors_reconstruct_exactly():
    a = np.random.default_rng(0).standard_normal((20, 35))
    p, q = Spectrum(a, method="exact").factors(20)
    np.testing.assert_allclose(p @ q, a, atol=1e-12)


def test_bad_method():
    with pytest.raises(ConfigError):
        Spectrum(np.eye(3), method="qr")
