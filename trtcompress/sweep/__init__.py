"""Sweeps: a grid of compress variants run in parallel (locally or on Ray), ending in the Pareto
fronts of accuracy against latency and size. ``grid`` (axes and variants), ``executors`` (where
variants run), ``pareto`` (the fronts), ``driver`` (the sweep itself)."""
from __future__ import annotations

from .driver import SweepConfig, SweepResult, run_sweep
from .executors import EXECUTORS
from .grid import AXES, Axis, expand, parse_set, read_grid
from .pareto import dominates, front

__all__ = ["AXES", "EXECUTORS", "Axis", "SweepConfig", "SweepResult", "dominates", "expand", "front", "parse_set", "read_grid", "run_sweep"]
