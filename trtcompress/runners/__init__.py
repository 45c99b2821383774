"""Backends behind one runner interface: Polygraphy's ``BaseRunner`` (activate / infer / deactivate).

Comparison and benchmarking depend only on that interface. Backends register a factory by name.
"""
from __future__ import annotations

from .registry import RunnerOptions, make_runner, register_backend, registered_backends

__all__ = ["RunnerOptions", "make_runner", "register_backend", "registered_backends"]
