"""The method registry: name -> function ``(histogram, **options) -> MethodResult``."""
from __future__ import annotations

import dataclasses
import inspect
from typing import Any, Callable

from ...errors import ConfigError
from ..histogram import AbsHistogram

__all__ = ["MethodResult", "MethodFn", "register_method", "get_method", "registered_methods"]


@dataclasses.dataclass(frozen=True)
class MethodResult:
    """``amax`` > 0 is the clip threshold; ``info`` holds method-specific numbers for the report."""

    amax: float
    info: dict[str, Any] = dataclasses.field(default_factory=dict)


MethodFn = Callable[..., MethodResult]
_METHODS: dict[str, MethodFn] = {}


def register_method(name: str) -> Callable[[MethodFn], MethodFn]:
    def deco(fn: MethodFn) -> MethodFn:
        _METHODS[name] = fn
        return fn

    return deco


def registered_methods() -> list[str]:
    return sorted(_METHODS)


def get_method(name: str) -> MethodFn:
    if name not in _METHODS:
        raise ConfigError(f"unknown calibration method {name!r}; choose one of {', '.join(registered_methods())}")
    return _METHODS[name]


def check_options(name: str, fn: MethodFn, options: dict[str, Any]) -> None:
    """Refuse options a method does not take, naming the ones it does."""
    params = [p for p in inspect.signature(fn).parameters if p != "hist"]
    unknown = sorted(set(options) - set(params))
    if unknown:
        raise ConfigError(f"method {name!r} takes no option(s) {', '.join(unknown)}; it takes {', '.join(params) or 'none'}")


def empty_result(hist: AbsHistogram) -> MethodResult | None:
    """Tensors with no non-zero value: any positive scale represents them exactly."""
    if hist.exponent is None:
        return MethodResult(1.0, {"all_zero": True})
    return None
