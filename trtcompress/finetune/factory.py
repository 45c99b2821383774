"""Load a user's Python factory from ``path/to/file.py:function`` or ``package.module:function``."""
from __future__ import annotations

import importlib
import importlib.util
import sys
from pathlib import Path
from typing import Any, Callable

from ..errors import ConfigError

__all__ = ["load_callable", "is_factory_spec"]


def is_factory_spec(spec: str) -> bool:
    target, sep, fn = spec.rpartition(":")
    return bool(sep and target and fn.isidentifier() and (target.endswith(".py") or all(p.isidentifier() for p in target.split("."))))


def load_callable(spec: str, what: str = "factory") -> Callable[..., Any]:
    """The function named by ``spec``; a one-line :class:`ConfigError` when it cannot be found."""
    target, sep, name = spec.rpartition(":")
    if not sep or not target or not name:
        raise ConfigError(f"{what} {spec!r} must look like path/to/file.py:function or package.module:function")
    if target.endswith(".py"):
        path = Path(target)
        if not path.is_file():
            raise ConfigError(f"{what} file {path} not found")
        mod_name = f"_trtcompress_user_{abs(hash(str(path.resolve())))}"
        module_spec = importlib.util.spec_from_file_location(mod_name, path)
        module = importlib.util.module_from_spec(module_spec)
        sys.modules[mod_name] = module
        try:
            module_spec.loader.exec_module(module)
        except Exception as e:
            del sys.modules[mod_name]
            raise ConfigError(f"{what} file {path} failed to import: {type(e).__name__}: {e}") from e
    else:
        try:
            module = importlib.import_module(target)
        except ImportError as e:
            raise ConfigError(f"{what} module {target!r} cannot be imported ({e}); check the name and sys.path") from e
    fn = getattr(module, name, None)
    if not callable(fn):
        raise ConfigError(f"{what} {spec!r}: {target} has no function {name!r}")
    return fn
