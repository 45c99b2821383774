"""Clip-threshold methods: each turns one tensor's |x| histogram into an amax, registered by name."""
from __future__ import annotations

from .registry import MethodResult, get_method, register_method, registered_methods
from . import entropy, mse, simple  # noqa: F401  (register the built-in methods)

__all__ = ["MethodResult", "get_method", "register_method", "registered_methods"]
