"""Pareto fronts: the variants no other variant beats on both accuracy and a cost.

A point dominates another when it is at least as good on both objectives and better on one
(higher accuracy, lower cost). The front is every point no other point dominates; points with a
missing value are on no front. Ties (equal on both) dominate neither, so both stay.
"""
from __future__ import annotations

from typing import Sequence

__all__ = ["dominates", "front"]

Point = tuple[float, float]  # (accuracy: higher is better, cost: lower is better)


def dominates(a: Point, b: Point) -> bool:
    return a[0] >= b[0] and a[1] <= b[1] and (a[0] > b[0] or a[1] < b[1])


def front(points: Sequence[tuple[str, float | None, float | None]]) -> list[str]:
    """The names on the front of ``(name, accuracy, cost)`` points, by increasing cost."""
    known = [(n, (a, c)) for n, a, c in points if a is not None and c is not None]
    on = [(n, p) for n, p in known if not any(dominates(q, p) for _, q in known)]
    return [n for n, _ in sorted(on, key=lambda x: (x[1][1], -x[1][0]))]
