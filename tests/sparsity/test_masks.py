"""Property tests of the 2:4 masks (numpy) and of the permutation search."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from trtcompress.sparsity.masks import as_rows, groups_violating, is_2to4, mask_2to4, prune_2to4, retained_magnitude
from trtcompress.sparsity.permute import kept_magnitude, search_permutation

finite = st.floats(-1e3, 1e3, allow_nan=False, allow_infinity=False, width=32)


@st.composite
def weights_and_axis(draw):
    ndim = draw(st.integers(1, 4))
    axis = draw(st.integers(0, ndim - 1))
    shape = [draw(st.integers(1, 3)) for _ in range(ndim)]
    shape[axis] = 4 * draw(st.integers(1, 4))
    w = draw(arrays(np.float32, tuple(shape), elements=finite))
    return w, axis


def _groups(a: np.ndarray, axis: int) -> np.ndarray:
    m = np.moveaxis(a, axis, -1)
    return m.reshape(-1, 4)


@settings(max_examples=200, deadline=None)
@given(weights_and_axis())
def test_every_group_keeps_exactly_two(wa):
    w, axis = wa
    mask = mask_2to4(w, axis)
    assert mask.shape == w.shape
    assert (_groups(mask, axis).sum(1) == 2).all()
    pruned, _ = prune_2to4(w, axis)
    assert is_2to4(pruned, axis)
    assert (np.count_nonzero(_groups(pruned, axis) == 0, axis=1) >= 2).all()


@settings(max_examples=200, deadline=None)
@given(weights_and_axis())
def test_kept_entries_are_the_largest(wa):
    w, axis = wa
    mask = _groups(mask_2to4(w, axis), axis)
    mag = np.abs(_groups(w, axis))
    kept_min = np.where(mask, mag, np.inf).min(1)
    dropped_max = np.where(~mask, mag, -np.inf).max(1)
    assert (kept_min >= dropped_max).all()


@settings(max_examples=200, deadline=None)
@given(weights_and_axis())
def test_pruning_is_idempotent_and_sign_blind(wa):
    w, axis = wa
    once, mask = prune_2to4(w, axis)
    twice, _ = prune_2to4(once, axis)
    np.testing.assert_array_equal(once, twice)
    np.testing.assert_array_equal(mask_2to4(-w, axis), mask)
    assert 0.0 <= retained_magnitude(w, mask) <= 1.0


def test_known_group_and_conv_layout():
    w = np.array([[0.1, -5.0, 3.0, 0.2, 1.0, 1.0, -1.0, 0.5]], np.float32)
    np.testing.assert_array_equal(mask_2to4(w, 1), [[False, True, True, False, True, True, False, False]])
    # Conv weight K x C x R x S: groups run along C for every (k, r, s)
    rng = np.random.default_rng(0)
    conv = rng.standard_normal((3, 8, 2, 2)).astype(np.float32)
    mask = mask_2to4(conv, 1)
    for k in range(3):
        for r in range(2):
            for s in range(2):
                col = np.abs(conv[k, :, r, s])
                for g in range(2):
                    grp = col[4 * g : 4 * g + 4]
                    assert set(np.flatnonzero(mask[k, 4 * g : 4 * g + 4, r, s])) == set(np.argsort(-grp, kind="stable")[:2])
    assert groups_violating(conv, 1) == 3 * 2 * 2 * 2
    assert not is_2to4(np.ones((2, 6), np.float32), 1)  # 6 channels cannot follow 2:4
    with pytest.raises(ValueError):
        mask_2to4(np.ones((2, 6), np.float32), 1)
    with pytest.raises(ValueError):
        mask_2to4(np.array([[1.0, np.nan, 0.0, 1.0]], np.float32), 1)


@settings(max_examples=60, deadline=None)
@given(st.integers(2, 12), st.integers(1, 40), st.integers(0, 10_000))
def test_permutation_search_is_a_permutation_and_never_worse(stripes, rows, seed):
    rng = np.random.default_rng(seed)
    mag = np.abs(rng.standard_normal((rows, 4 * stripes)) * rng.random(4 * stripes)).astype(np.float32)
    res = search_permutation(mag, max_rounds=5, seed=seed)
    assert sorted(res.perm.tolist()) == list(range(4 * stripes))
    assert res.kept_after >= res.kept_before - 1e-4
    # the score the search reports is what a 2:4 mask keeps on the permuted columns
    permuted = mag[:, res.perm]
    assert abs(kept_magnitude(mag, res.perm) - float(np.abs(permuted[mask_2to4(permuted, 1)]).sum())) < 1e-2 * max(1.0, res.total)
    assert abs(res.kept_before - float(mag[mask_2to4(mag, 1)].sum())) < 1e-2 * max(1.0, res.total)


def test_permutation_search_finds_the_obvious_split():
    # columns 0..3 all large, 4..7 all small: any 2:4 mask drops two large ones; mixing them keeps all large
    mag = np.array([[9, 9, 9, 9, 1, 1, 1, 1]] * 6, np.float32)
    res = search_permutation(mag, seed=0)
    assert res.kept_before == pytest.approx(6 * (18 + 2))
    assert res.kept_after == pytest.approx(6 * 36)
    assert res.improved


def test_as_rows_puts_the_reduction_axis_last():
    w = np.arange(2 * 8 * 3, dtype=np.float32).reshape(2, 8, 3)
    rows = as_rows(w, 1)
    assert rows.shape == (6, 8)
    np.testing.assert_array_equal(rows[0], w[0, :, 0])


@settings(max_examples=100, deadline=None)
@given(weights_and_axis(), st.sampled_from([np.float32, np.int8, np.float64]), st.integers(1, 64))
def test_mask_is_the_stable_sort_of_magnitudes_whatever_the_blocks(wa, dtype, block):
    """Ties (many, once rounded to a few levels) keep the lower index, as a stable sort does, and
    working in blocks does not change the mask."""
    import trtcompress.sparsity.masks as masks

    w, axis = wa
    w = np.round(w / 300).astype(dtype)  # a few distinct levels: ties everywhere
    g = _groups(np.abs(w.astype(np.float64)), axis)
    order = np.argsort(-g, axis=1, kind="stable")
    ref = np.zeros(g.shape, bool)
    np.put_along_axis(ref, order[:, :2], True, axis=1)
    saved = masks.BLOCK
    masks.BLOCK = block
    try:
        got = mask_2to4(w, axis)
    finally:
        masks.BLOCK = saved
    np.testing.assert_array_equal(_groups(got, axis), ref)
