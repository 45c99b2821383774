"""Rank rules: break-even (skip) rule, energy, error budget, FLOP budget."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from trtcompress.errors import ConfigError
from trtcompress.lowrank import LowRankConfig
from trtcompress.lowrank.ranks import Candidate, choose_ranks, max_useful_rank
from trtcompress.lowrank.svd import Spectrum


@settings(max_examples=200, deadline=None)
@given(st.integers(1, 400), st.integers(1, 400), st.sampled_from([0.0, 0.1, 0.5]))
def test_max_useful_rank_is_the_largest_rank_that_cuts_macs(out_dim, in_dim, saving):
    r = max_useful_rank(out_dim, in_dim, saving)
    dense = out_dim * in_dim
    ok = lambda k: k * (in_dim + out_dim) < dense and k * (in_dim + out_dim) <= (1 - saving) * dense and k <= min(in_dim, out_dim)
    assert r == 0 or ok(r)
    assert not ok(r + 1)


def test_break_even_formula():
    # r < N*K/(N+K): 64 x 64 -> r < 32
    assert max_useful_rank(64, 64) == 31
    assert max_useful_rank(10, 32) == 7
    assert max_useful_rank(1, 100) == 0


def _cand(name, out_dim, in_dim, positions=1, decay=0.8, seed=0, error_fn=None):
    rng = np.random.default_rng(seed)
    k = min(out_dim, in_dim)
    u, _ = np.linalg.qr(rng.standard_normal((out_dim, k)))
    v, _ = np.linalg.qr(rng.standard_normal((in_dim, k)))
    m = (u * decay ** np.arange(k)) @ v.T
    return Candidate(name, "MatMul", out_dim, in_dim, positions, Spectrum(m, "exact"), error_fn)


def test_energy_rule_smallest_rank_and_skip():
    a, b = _cand("a", 64, 128, decay=0.6), _cand("b", 64, 128, decay=0.999)
    choices = choose_ranks([a, b], LowRankConfig(rule="energy", energy=0.95))
    ca, cb = choices
    s = a.spectrum.s
    cum = np.cumsum(s**2) / np.sum(s**2)
    assert ca.rank == int(np.searchsorted(cum, 0.95)) + 1 and ca.energy >= 0.95
    # nearly flat spectrum: 95% of the energy needs more than the break-even rank
    assert cb.rank is None and "energy" in cb.reason and cb.r_max == max_useful_rank(64, 128)


def test_skip_rule_for_a_layer_that_cannot_save():
    (c,) = choose_ranks([_cand("tiny", 1, 50)], LowRankConfig(rule="flops"))
    assert c.rank is None and "cuts FLOPs" in c.reason


def test_rank_multiple_and_min_saving():
    (c,) = choose_ranks([_cand("a", 64, 128, decay=0.6)], LowRankConfig(rule="energy", energy=0.95, rank_multiple=8))
    assert c.rank % 8 == 0
    (d,) = choose_ranks([_cand("a", 64, 64, decay=0.99)], LowRankConfig(rule="energy", energy=0.5, min_flop_saving=0.5))
    assert d.r_max == max_useful_rank(64, 64, 0.5) == 16


def test_flops_rule_meets_the_budget_and_prefers_energy_per_flop():
    cands = [_cand("steep", 64, 256, positions=100, decay=0.5), _cand("flat", 64, 256, positions=100, decay=0.97, seed=1), _cand("other", 32, 96, positions=400, decay=0.9, seed=2)]
    cfg = LowRankConfig(rule="flops", flop_fraction=0.3)
    choices = choose_ranks(cands, cfg)
    dense = sum(c.dense_macs for c in cands)
    spent = sum(c.macs(ch.rank) if ch.rank else c.dense_macs for c, ch in zip(cands, choices))
    assert spent <= 0.3 * dense
    # the greedy fills the budget to within one rank step of the cheapest layer
    assert spent > 0.3 * dense - max(c.macs(1) for c in cands)
    by = {ch.name: ch.rank for ch in choices}
    assert all(by.values()) and by["flat"] > by["steep"]  # a flat spectrum needs more rank for its energy
    # greedy optimality: no single rank moved between two layers gains energy per the same cost
    e = {c.name: c.spectrum for c in cands}
    gain_up = e["flat"].energy(by["flat"] + 1) - e["flat"].energy(by["flat"])
    loss_down = e["steep"].energy(by["steep"]) - e["steep"].energy(by["steep"] - 1)
    assert gain_up <= loss_down + 1e-12


def test_error_rule_binary_search_finds_the_smallest_rank():
    calls = []

    def err(r):
        calls.append(r)
        return 1.0 / r

    c = _cand("a", 64, 256, error_fn=err)
    (ch,) = choose_ranks([c], LowRankConfig(rule="error", error=0.1))
    assert ch.rank == 10 and ch.error == pytest.approx(0.1)
    assert len(calls) <= 8  # a binary search, not a scan of 51 ranks
    (none,) = choose_ranks([_cand("b", 64, 256, error_fn=lambda r: 0.5)], LowRankConfig(rule="error", error=0.1))
    assert none.rank is None and "exceeds the budget" in none.reason


@pytest.mark.parametrize("kw", [dict(rule="svd"), dict(energy=1.5), dict(flop_fraction=1.0), dict(ops=("LSTM",)), dict(svd="qr"), dict(min_rank=0)])
def test_config_validation(kw):
    with pytest.raises(ConfigError):
        LowRankConfig(**kw)


def test_config_json_round_trip():
    c = LowRankConfig(rule="flops", flop_fraction=0.4, exclude=("head.*",))
    assert LowRankConfig.from_json(c.to_json()) == c


def test_flops_rule_leaves_a_layer_dense_rather_than_at_break_even():
    # a steep layer and a layer whose spectrum is flat: a generous budget fills the flat one to its
    # break-even rank, where factorising saves nothing, so it stays dense
    cands = [_cand("steep", 64, 256, positions=100, decay=0.5), _cand("cheap", 16, 16, positions=1, decay=0.999, seed=4)]
    choices = {c.name: c for c in choose_ranks(cands, LowRankConfig(rule="flops", flop_fraction=0.6))}
    assert choices["cheap"].rank is None and "stays dense" in choices["cheap"].reason
    assert choices["steep"].rank is not None


def test_uniform_allocation_keeps_one_energy_fraction_within_the_budget():
    cands = [_cand("steep", 64, 256, positions=100, decay=0.5), _cand("flat", 64, 256, positions=100, decay=0.97, seed=1), _cand("other", 32, 96, positions=400, decay=0.9, seed=2)]
    choices = choose_ranks(cands, LowRankConfig(rule="flops", flop_fraction=0.4, allocation="uniform"))
    spent = sum(c.macs(ch.rank) if ch.rank else c.dense_macs for c, ch in zip(cands, choices))
    assert spent <= 0.4 * sum(c.dense_macs for c in cands)
    kept = [ch.energy for ch in choices if ch.rank]
    # every factorised layer keeps at least the common fraction, and one more rank in any layer breaks the budget
    floor = min(kept)
    for c, ch in zip(cands, choices):
        if ch.rank:
            assert c.spectrum.energy(ch.rank - 1) < floor + 1e-9 or ch.rank == 1
    assert any(spent + c.macs(1) > 0.4 * sum(x.dense_macs for x in cands) for c in cands)
