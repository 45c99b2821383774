"""1-D k-means properties a user of weight sharing relies on."""
from __future__ import annotations

import numpy as np
import pytest

from trtcompress.share.kmeans import INITS, kmeans_1d, kmeans_rows


def _weights(n=20000, zeros=0.5, seed=0):
    rng = np.random.default_rng(seed)
    w = rng.standard_normal(n).astype(np.float32) * 0.05
    w[rng.random(n) < zeros] = 0
    return w


@pytest.mark.parametrize("init", sorted(INITS))
def test_zeros_preserved_exactly(init):
    w = _weights()
    book, idx = kmeans_1d(w, 16, init)
    assert book[0] == 0.0
    np.testing.assert_array_equal(book[idx] == 0, w == 0)  # pruned stay pruned, no weight becomes 0
    assert np.all(idx[w == 0] == 0)


@pytest.mark.parametrize("init", sorted(INITS))
@pytest.mark.parametrize("k", [2, 5, 16, 256])
def test_cluster_count_respected(init, k):
    w = _weights(zeros=0.3)
    book, idx = kmeans_1d(w, k, init)
    assert book.size <= k and int(idx.max()) < book.size
    assert idx.dtype == np.uint8
    assert len(np.unique(book[idx])) <= k


@pytest.mark.parametrize("init", sorted(INITS))
def test_deterministic_for_a_seed(init):
    w = _weights(zeros=0.0)
    a, ia = kmeans_1d(w, 16, init, seed=3)
    b, ib = kmeans_1d(w, 16, init, seed=3)
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(ia, ib)


def test_each_weight_goes_to_its_nearest_centroid_and_lloyd_beats_its_start():
    w = _weights(zeros=0.0)
    book, idx = kmeans_1d(w, 8, "linear")
    dist = np.abs(w[:, None].astype(np.float64) - book[None, :])
    np.testing.assert_array_equal(idx, dist.argmin(axis=1))
    start = np.linspace(w.min(), w.max(), 8)
    start_err = np.min((w[:, None] - start[None, :]) ** 2, axis=1).sum()
    assert ((book[idx] - w) ** 2).sum() < start_err
    more, more_idx = kmeans_1d(w, 32, "linear")
    assert ((more[more_idx] - w) ** 2).sum() < ((book[idx] - w) ** 2).sum()  # more clusters, less error


def test_few_distinct_values_are_kept_exactly():
    w = np.array([0, 0.5, -0.25, 0.5, 0, 1.0], np.float32)
    book, idx = kmeans_1d(w, 16)
    np.testing.assert_array_equal(book[idx], w)


def test_rows_cluster_independently():
    rng = np.random.default_rng(1)
    rows = np.stack([rng.standard_normal(500), 100 + rng.standard_normal(500)])
    books, idx = kmeans_rows(rows, 4)
    decoded = np.take_along_axis(books, idx.astype(np.int64), axis=1)
    assert np.all(decoded[1] > 90) and np.all(decoded[0] < 10)
    # Lloyd-Max with 4 levels leaves about 0.34 of a unit Gaussian's RMS: each row's own codebook
    assert np.all(np.sqrt(((decoded - rows) ** 2).mean(axis=1)) < 0.4)


@pytest.mark.parametrize("init", sorted(INITS))
def test_rows_keep_zeros_and_count(init):
    rng = np.random.default_rng(2)
    rows = rng.standard_normal((6, 300)) * rng.random((6, 1)) * 10
    rows[rng.random(rows.shape) < 0.5] = 0
    rows[3] = 0  # a pruned-away channel
    books, idx = kmeans_rows(rows, 8, init)
    decoded = np.take_along_axis(books, idx.astype(np.int64), axis=1)
    np.testing.assert_array_equal(decoded == 0, rows == 0)
    assert books.shape == (6, 8) and np.all(books[:, 0] == 0) and int(idx.max()) < 8


def test_rows_all_at_once_equal_one_row_at_a_time():
    rng = np.random.default_rng(4)
    rows = rng.standard_normal((5, 400)) * np.array([[0.01], [0.1], [1], [10], [100]])
    books, idx = kmeans_rows(rows, 16, "linear")
    for r in range(5):
        book, i = kmeans_1d(rows[r], 16, "linear")
        np.testing.assert_allclose(np.take_along_axis(books, idx.astype(np.int64), axis=1)[r], book[i], rtol=1e-9, atol=1e-12)
