"""The vectorised entropy search against a direct implementation of TensorRT's algorithm."""
from __future__ import annotations

import numpy as np
import pytest

from trtcompress.quant.histogram import AbsHistogram
from trtcompress.quant.methods.entropy import SMOOTHING, entropy, entropy_clip_bin, kl_divergences


def reference_kl(counts: np.ndarray, i: int, levels: int = 128) -> float:
    """KL(P || Q) for clip bin ``i``, written out bin by bin as FIELD.md describes the algorithm."""
    counts = np.asarray(counts, np.float64)
    p = counts[:i].copy()
    p[i - 1] += counts[i:].sum()
    q = np.zeros(i)
    for j in range(levels):
        lo, hi = -(-j * i // levels), -(-(j + 1) * i // levels)
        seg = counts[lo:hi]
        nonempty = np.count_nonzero(seg)
        if nonempty:
            q[lo:hi] = np.where(seg > 0, seg.sum() / nonempty, 0.0)
    if q.sum() == 0:
        return np.inf
    P = p / p.sum()
    Q = q / q.sum()
    Q[(P > 0) & (Q == 0)] = SMOOTHING / q.sum()
    m = P > 0
    return float(np.sum(P[m] * np.log(P[m] / Q[m])))


def reference_clip_bin(counts: np.ndarray, levels: int = 128, start: int = 128) -> int:
    best, best_kl = None, np.inf
    for i in range(start, len(counts) + 1):
        kl = reference_kl(counts, i, levels)
        if kl <= best_kl:
            best, best_kl = i, kl
    return best


def random_histogram(rng: np.random.Generator, n: int) -> np.ndarray:
    """Histograms shaped like activations: a heavy head, a long tail, empty bins, a zero spike."""
    kind = rng.integers(3)
    x = np.arange(n)
    if kind == 0:
        lam = rng.uniform(5, 200)
        c = rng.poisson(1e5 * np.exp(-x / lam))
    elif kind == 1:
        c = rng.poisson(1e4 * np.exp(-((x - rng.uniform(0, n / 3)) ** 2) / (2 * rng.uniform(20, 300) ** 2)) + 0.3)
    else:
        c = rng.integers(0, 50, n) * (rng.random(n) < 0.5)
    c = c.astype(np.int64)
    c[0] += rng.integers(0, 10**6)
    c[-1] = max(c[-1], 1)
    return c


@pytest.mark.parametrize("seed", range(6))
def test_matches_reference_on_random_histograms(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(300, 700))
    counts = random_histogram(rng, n)
    levels = 128 if seed % 2 else 64
    cand, kl = kl_divergences(counts, levels)
    # every candidate's divergence matches, not just the winner
    for k in rng.choice(cand.size, 25, replace=False):
        ref = reference_kl(counts, int(cand[k]), levels)
        assert kl[k] == pytest.approx(ref, rel=1e-9, abs=1e-12)
    assert entropy_clip_bin(counts, levels)[0] == reference_clip_bin(counts, levels, levels)


def test_matches_reference_at_tensorrt_size():
    rng = np.random.default_rng(7)
    counts = random_histogram(rng, 2048)
    cand, kl = kl_divergences(counts)
    assert cand[0] == 128 and cand[-1] == 2048 and cand.size == 1921
    i, _ = entropy_clip_bin(counts)
    ref_kl = [reference_kl(counts, j) for j in range(max(128, i - 40), min(2048, i + 40) + 1)]
    # the winner is at least as good as its neighbourhood under the reference too
    assert reference_kl(counts, i) == pytest.approx(min(ref_kl), rel=1e-9)


def test_empty_last_bin_with_tail_is_penalised():
    counts = np.zeros(400, np.int64)
    counts[:200] = 1000
    counts[300] = 5  # outliers after a gap
    cand, kl = kl_divergences(counts)
    # clipping inside the gap puts P mass where Q has none
    assert np.all(kl[(cand > 200) & (cand <= 300)] > kl[cand == 200])


def test_entropy_clips_a_long_tail_and_not_a_uniform():
    rng = np.random.default_rng(0)
    h = AbsHistogram()
    h.add(rng.laplace(size=200_000).astype(np.float32))
    r = entropy(h)
    assert 0 < r.amax < 0.8 * h.amax
    u = AbsHistogram()
    u.add(rng.uniform(-1, 1, 200_000).astype(np.float32))
    assert entropy(u).amax == pytest.approx(u.amax, rel=0.02)


def test_threshold_is_the_centre_of_the_clip_bin():
    """TensorRT's threshold is (i + 0.5) x bin width for the winning clip bin i (FIELD.md), the
    bin's centre and not its edge: half a bin is 0.1% of this range, too little for any accuracy
    test to notice, so the conversion is checked here on its own."""
    rng = np.random.default_rng(5)
    h = AbsHistogram()
    h.add(rng.laplace(size=200_000).astype(np.float32))
    counts, width = h.coarse(2048, drop_zeros=True)
    i, _ = entropy_clip_bin(counts)  # the search itself is checked against the reference above
    assert 128 <= i < counts.size  # the long tail is clipped: the threshold lies inside the range
    result = entropy(h, keep_saturation=False)
    assert result.info["bin"] == i
    assert result.amax == pytest.approx((i + 0.5) * width, rel=1e-6)


def test_zero_modes():
    rng = np.random.default_rng(1)
    x = np.maximum(rng.standard_normal(100_000), 0).astype(np.float32)  # half exact zeros
    h = AbsHistogram()
    h.add(x)
    assert h.zeros == np.count_nonzero(x == 0)
    amax = {z: entropy(h, zeros=z).amax for z in ("keep", "drop", "damp")}
    assert all(0 < a <= h.amax for a in amax.values())
    counts, _ = h.coarse(drop_zeros=True)
    full, _ = h.coarse()
    assert full[0] - counts[0] == h.zeros


def test_deterministic_and_vectorised_speed():
    import time

    rng = np.random.default_rng(3)
    counts = random_histogram(rng, 2048)
    t = time.perf_counter()
    a = entropy_clip_bin(counts)
    elapsed = time.perf_counter() - t
    assert entropy_clip_bin(counts) == a
    assert elapsed < 1.0  # 1921 candidates at once; the naive search takes tens of seconds


def test_relu6_saturation_keeps_the_clip_level():
    from trtcompress.quant.methods.entropy import saturated

    rng = np.random.default_rng(5)
    relu6 = np.clip(rng.standard_normal(300_000) * 2.5, 0, 6).astype(np.float32)  # zeros and a spike at 6
    h = AbsHistogram()
    h.add(relu6)
    assert saturated(h)
    assert entropy(h).amax == 6.0 and entropy(h).info["saturated"]
    assert "saturated" not in entropy(h, keep_saturation=False).info
    tail = AbsHistogram()
    tail.add(rng.laplace(size=300_000).astype(np.float32))
    assert not saturated(tail)


def test_zero_spike_drives_kept_zeros_to_the_smallest_candidate():
    rng = np.random.default_rng(6)
    x = np.maximum(rng.laplace(size=300_000), 0).astype(np.float32)  # half the values are exact zeros
    h = AbsHistogram()
    h.add(x)
    kept = entropy(h, zeros="keep", keep_saturation=False)
    dropped = entropy(h, zeros="drop", keep_saturation=False)
    # kept zeros: the level holding bin 0 smears the spike, so the search wants narrow levels
    assert kept.amax < 0.3 * dropped.amax


def test_a_sparse_histogram_keeps_its_maximum():
    """Too few values for the KL search to tell a tail from noise (a squeeze-excite Conv's output: one
    value per channel and sample): the maximum is kept; with enough values the search clips as before."""
    from trtcompress.quant.histogram import AbsHistogram
    from trtcompress.quant.methods.entropy import entropy

    rng = np.random.default_rng(0)
    few = AbsHistogram()
    few.add(rng.normal(size=64).astype(np.float32))
    r = entropy(few)
    assert r.amax == pytest.approx(float(few.amax)) and r.info["few_values"] == 64
    many = AbsHistogram()
    many.add(rng.normal(size=200_000).astype(np.float32))
    assert entropy(many).amax < 0.95 * float(many.amax)
