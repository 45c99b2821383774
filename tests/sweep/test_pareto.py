"""The Pareto front: a point is on it iff no other point is at least as good on both objectives
and better on one; ties stay together; a point without a value is on no front."""
from __future__ import annotations

import itertools
import random

from trtcompress.sweep import dominates, front


def test_front_by_hand():
    pts = [("a", 0.99, 3.0), ("b", 0.95, 1.0), ("c", 0.95, 2.0), ("d", 0.99, 3.0), ("e", 1.0, 5.0), ("f", None, 0.1), ("g", 0.9, 1.0)]
    assert front(pts) == ["b", "a", "d", "e"]  # c is beaten by b, g by b (same cost, less accurate); a and d tie


def test_front_matches_the_definition_on_random_points():
    rng = random.Random(0)
    for _ in range(200):
        pts = [(str(i), rng.choice([0.9, 0.95, 1.0, rng.random()]), rng.choice([1.0, 2.0, rng.random() * 3])) for i in range(rng.randint(1, 9))]
        on = set(front(pts))
        for (n, a, c), (m, b, d) in itertools.permutations(pts, 2):
            if n in on:
                assert not dominates((b, d), (a, c))
        for n, a, c in pts:
            if n not in on:
                assert any(dominates((b, d), (a, c)) for m, b, d in pts if m != n)
