"""Rank choice, shared by the ONNX stage and the torch transform.

Every factorisable layer is described by a :class:`Candidate`: its weight as an ``out x in``
matrix (a Conv K x C x R x S reads as K x CRS), how many output positions it computes per sample
(rows of a MatMul, pixels of a Conv), its :class:`~.svd.Spectrum`, and optionally a function that
measures its output error at a given rank. A rank-r factorisation costs ``r (in + out)`` MACs per
position against ``in * out`` dense, so it pays only below ``in * out / (in + out)``.
"""
from __future__ import annotations

import dataclasses
import math
from typing import Callable, Sequence

import numpy as np

from ..select import Patterns
from .config import LowRankConfig
from .svd import Spectrum

__all__ = ["Candidate", "Choice", "choose_ranks", "max_useful_rank", "excluded"]


def max_useful_rank(out_dim: int, in_dim: int, min_saving: float = 0.0) -> int:
    """Largest r whose factorisation cuts MACs (by at least ``min_saving``); 0 when none does."""
    dense = out_dim * in_dim
    limit = (1.0 - min_saving) * dense
    r = int(math.floor(limit / (in_dim + out_dim)))
    while r > 0 and (r * (in_dim + out_dim) >= dense or r * (in_dim + out_dim) > limit):
        r -= 1
    return min(r, out_dim, in_dim)


def excluded(name: str, patterns: Sequence[str], op_type: str = "") -> bool:
    return Patterns(tuple(patterns)).match((name, op_type)) is not None


@dataclasses.dataclass
class Candidate:
    name: str
    op: str
    out_dim: int
    in_dim: int
    positions: int
    spectrum: Spectrum
    error_fn: Callable[[int], float] | None = None

    @property
    def dense_macs(self) -> int:
        return self.positions * self.out_dim * self.in_dim

    def macs(self, r: int) -> int:
        return self.positions * r * (self.in_dim + self.out_dim)

    @property
    def dense_params(self) -> int:
        return self.out_dim * self.in_dim

    def params(self, r: int) -> int:
        return r * (self.in_dim + self.out_dim)


@dataclasses.dataclass
class Choice:
    """The outcome for one layer: a rank, or ``rank=None`` and the reason it stays dense."""

    name: str
    rank: int | None
    r_max: int
    reason: str | None = None
    energy: float | None = None
    error: float | None = None


def _round_up(r: int, multiple: int) -> int:
    return -(-r // multiple) * multiple


def choose_ranks(cands: Sequence[Candidate], config: LowRankConfig) -> list[Choice]:
    """Pick a rank per candidate with the config's rule; returns one :class:`Choice` per candidate."""
    choices: dict[str, Choice] = {}
    live: list[Candidate] = []
    for c in cands:
        r_max = max_useful_rank(c.out_dim, c.in_dim, config.min_flop_saving) // config.rank_multiple * config.rank_multiple
        r_min = _round_up(config.min_rank, config.rank_multiple)
        if r_max < r_min:
            choices[c.name] = Choice(c.name, None, r_max, f"no rank >= {r_min} cuts FLOPs{_saving(config)} (break-even rank {c.out_dim * c.in_dim / (c.out_dim + c.in_dim):.1f})")
        else:
            choices[c.name] = Choice(c.name, None, r_max)
            live.append(c)
    rule = {"energy": _by_energy, "error": _by_error, "flops": _by_flops if config.allocation == "greedy" else _by_uniform_energy}[config.rule]
    rule(live, choices, config)
    for c in live:
        ch = choices[c.name]
        if ch.rank is not None and ch.energy is None:
            ch.energy = c.spectrum.energy(ch.rank)
    return [choices[c.name] for c in cands]


def _saving(config: LowRankConfig) -> str:
    return f" by {config.min_flop_saving:.0%}" if config.min_flop_saving else ""


def _by_energy(cands: Sequence[Candidate], choices: dict[str, Choice], config: LowRankConfig) -> None:
    for c in cands:
        ch = choices[c.name]
        r = c.spectrum.rank_for_energy(config.energy, ch.r_max)
        if r is not None:
            r = _round_up(max(r, config.min_rank), config.rank_multiple)
        if r is None or r > ch.r_max:
            ch.reason = f"keeping {config.energy:g} of the energy needs a rank above {ch.r_max}, where factorising stops cutting FLOPs{_saving(config)}"
        else:
            ch.rank = r


def _by_error(cands: Sequence[Candidate], choices: dict[str, Choice], config: LowRankConfig) -> None:
    m = config.rank_multiple
    for c in cands:
        ch = choices[c.name]
        if c.error_fn is None:
            ch.reason = "no calibration data to measure its output error"
            continue
        lo, hi = _round_up(config.min_rank, m) // m, ch.r_max // m
        top = c.error_fn(hi * m)
        if top > config.error:
            ch.reason = f"relative output error {top:.3g} at the break-even rank {hi * m} exceeds the budget {config.error:g}"
            continue
        errs = {hi: top}
        while lo < hi:  # smallest multiple whose error is within budget (error falls with rank)
            mid = (lo + hi) // 2
            errs[mid] = c.error_fn(mid * m)
            if errs[mid] <= config.error:
                hi = mid
            else:
                lo = mid + 1
        ch.rank, ch.error = hi * m, errs[hi] if hi in errs else c.error_fn(hi * m)


def _by_flops(cands: Sequence[Candidate], choices: dict[str, Choice], config: LowRankConfig) -> None:
    """Greedy knapsack: each step adds the chunk of ``rank_multiple`` singular values with the most
    relative energy per MAC. Chunk gains fall within a layer, so sorting all chunks by gain per MAC
    and taking them in order is the greedy allocation."""
    if not cands:
        return
    m = config.rank_multiple
    r0 = _round_up(config.min_rank, m)
    budget = config.flop_fraction * sum(c.dense_macs for c in cands)
    for c in cands:  # an eighth of the spectrum first: cheap with the randomised SVD
        c.spectrum.ensure(min(choices[c.name].r_max, max(r0, c.spectrum.full_rank // 8)))
    for _ in range(3):
        gains, costs, owner, tops = [], [], [], []
        for i, c in enumerate(cands):
            s = c.spectrum.s
            e = np.concatenate([[0.0], np.cumsum(s**2)]) / (c.spectrum.total_energy or 1.0)
            top = min(len(s), choices[c.name].r_max) // m * m
            edges = np.arange(r0, top + 1, m)
            g = e[edges[1:]] - e[edges[:-1]]
            gains.append(g)
            costs.append(np.full(len(g), c.macs(m), dtype=np.float64))
            owner.append(np.full(len(g), i))
            tops.append(top)
        gain, cost, who = np.concatenate(gains), np.concatenate(costs), np.concatenate(owner)
        ratio = gain / np.maximum(cost, 1.0)
        order = np.lexsort((np.arange(len(ratio)), -ratio))  # stable: keeps each layer's chunks in order
        spent = float(sum(c.macs(r0) for c in cands))
        ranks = [r0] * len(cands)
        for j in order:
            if spent + cost[j] <= budget:
                spent += cost[j]
                ranks[who[j]] += m
        # a layer that used every singular value computed so far may want more: complete it and redo
        short = [c for c, r, top in zip(cands, ranks, tops) if r >= top and top < choices[c.name].r_max // m * m and not c.spectrum.complete]
        if not short:
            break
        for c in short:
            c.spectrum.ensure(choices[c.name].r_max)
    # A layer filled up to its break-even rank saves almost nothing and runs two ops instead of one:
    # leave it dense where the budget allows (cheapest extra cost first).
    full = sorted((c.dense_macs - c.macs(r), i) for i, (c, r) in enumerate(zip(cands, ranks)) if r >= choices[c.name].r_max)
    for extra, i in full:
        if spent + extra <= budget:
            spent += extra
            ranks[i] = None
    for c, r in zip(cands, ranks):
        ch = choices[c.name]
        if r is None:
            ch.reason = f"the FLOP budget gave it its break-even rank {ch.r_max}; it stays dense instead"
        else:
            ch.rank = r


def _by_uniform_energy(cands: Sequence[Candidate], choices: dict[str, Choice], config: LowRankConfig) -> None:
    """The largest energy fraction e, kept in every layer, whose ranks fit the FLOP budget (bisection
    on e; a layer that cannot keep e below its break-even rank stays dense and costs its dense FLOPs)."""
    if not cands:
        return
    m = config.rank_multiple
    budget = config.flop_fraction * sum(c.dense_macs for c in cands)

    def ranks(e: float) -> list[int | None]:
        out = []
        for c in cands:
            r = c.spectrum.rank_for_energy(e, choices[c.name].r_max)
            r = None if r is None else _round_up(max(r, config.min_rank), m)
            out.append(None if r is None or r > choices[c.name].r_max else r)
        return out

    def cost(rs: list[int | None]) -> float:
        return float(sum(c.dense_macs if r is None else c.macs(r) for c, r in zip(cands, rs)))

    lo, hi = 0.0, 1.0
    best = ranks(lo)
    for _ in range(40):
        mid = (lo + hi) / 2
        rs = ranks(mid)
        if cost(rs) <= budget:
            lo, best = mid, rs
        else:
            hi = mid
    for c, r in zip(cands, best):
        ch = choices[c.name]
        if r is None:
            ch.reason = f"keeping the common energy fraction {lo:.4f} needs a rank above its break-even rank {ch.r_max}"
        else:
            ch.rank = r
