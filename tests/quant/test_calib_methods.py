"""Properties of the max, percentile and MSE methods on known distributions."""
from __future__ import annotations

import numpy as np
import pytest

from trtcompress.errors import ConfigError
from trtcompress.quant.histogram import AbsHistogram
from trtcompress.quant.methods import get_method, registered_methods
from trtcompress.quant.methods.mse import expected_mse


def hist_of(x: np.ndarray) -> AbsHistogram:
    h = AbsHistogram()
    h.add(np.asarray(x, np.float32))
    return h


def test_registry():
    assert {"entropy", "max", "percentile", "mse"} <= set(registered_methods())
    with pytest.raises(ConfigError, match="unknown calibration method"):
        get_method("kl")


def test_percentile_tracks_the_distribution():
    rng = np.random.default_rng(0)
    x = rng.standard_normal(400_000)
    h = hist_of(x)
    for p in (90.0, 99.0, 99.9):
        amax = get_method("percentile")(h, percentile=p).amax
        exact = np.percentile(np.abs(x), p)
        assert amax == pytest.approx(exact, abs=2 * h.bin_width)
    assert get_method("percentile")(h, percentile=100).amax == h.amax
    with pytest.raises(ConfigError):
        get_method("percentile")(h, percentile=0)


def test_mse_matches_a_brute_force_search():
    rng = np.random.default_rng(1)
    x = rng.laplace(size=100_000).astype(np.float32)
    h = hist_of(x)
    r = get_method("mse")(h)
    assert 0.2 * h.amax < r.amax < 0.9 * h.amax  # a long tail is clipped, not kept
    # the expected-error model agrees with quantizing the data itself, up to histogram resolution
    def real_mse(t):
        s = t / 127
        return np.mean((x - np.clip(np.round(x / s), -127, 127) * s) ** 2)

    grid = np.linspace(0.3, 1.0, 29) * h.amax
    best = grid[np.argmin([real_mse(t) for t in grid])]
    assert real_mse(r.amax) <= real_mse(best) * 1.03
    counts, width = h.coarse(drop_zeros=True)
    model = expected_mse(counts, width, grid) / counts.sum()
    real = np.array([real_mse(t) for t in grid])
    assert np.allclose(model, real, rtol=0.1)


def test_uniform_data_is_not_clipped():
    x = np.random.default_rng(2).uniform(-3, 3, 200_000)
    h = hist_of(x)
    assert get_method("mse")(h).amax == pytest.approx(h.amax, rel=0.01)
    assert get_method("max")(h).amax == h.amax


def test_all_zero_tensor_gets_a_usable_scale():
    h = hist_of(np.zeros(100))
    for name in ("entropy", "max", "percentile", "mse"):
        r = get_method(name)(h)
        assert r.amax > 0 and r.info.get("all_zero")
