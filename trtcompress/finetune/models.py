"""Resolve model specs for fine-tuning: ``zoo:NAME`` or a factory returning an ``nn.Module``."""
from __future__ import annotations

import inspect
from typing import Any

from .._optional import require
from ..errors import ConfigError, ModelError
from ..userref import load_callable

__all__ = ["load_module"]


def load_module(spec: str, what: str = "model", teacher: Any = None):
    """``zoo:fashion_cnn`` (a trtcompress.zoo model) or ``file.py:function`` / ``pkg.mod:function``.

    A factory that takes a parameter is given the teacher (to derive a student from it).
    """
    torch = require("torch", "fine-tuning")
    if spec.startswith("zoo:"):
        from .. import zoo

        name = spec[4:]
        fn = getattr(zoo, name, None)
        if not callable(fn):
            raise ConfigError(f"{what} {spec!r}: trtcompress.zoo has no model {name!r}")
        model = fn()
    else:
        fn = load_callable(spec, f"{what} factory")
        required = [p for p in inspect.signature(fn).parameters.values() if p.default is p.empty and p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
        model = fn(teacher) if required and teacher is not None else fn()
    if not isinstance(model, torch.nn.Module):
        raise ModelError(f"{what} {spec!r} gave {type(model).__name__}, not a torch nn.Module")
    return model
