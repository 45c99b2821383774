"""Objects the user names as ``path/to/file.py:name`` or ``package.module:name`` (model factories,
calibration feed functions, training data factories)."""
from __future__ import annotations

import importlib
import importlib.util
import sys
from pathlib import Path
from typing import Any, Callable

from .errors import ConfigError, UserError

__all__ = ["is_reference", "load_reference", "load_callable", "absolute_reference"]


def is_reference(spec: str) -> bool:
    """True for ``file.py:name`` and ``pkg.mod:name`` (not for a plain path or a keyword)."""
    target, sep, name = spec.rpartition(":")
    return bool(sep and target and name.isidentifier() and (target.endswith(".py") or all(p.isidentifier() for p in target.split("."))))


def load_reference(spec: str, what: str = "object", error: type[UserError] = ConfigError) -> Any:
    """The object named by ``spec``; ``error`` (one line) when the file, module or name is missing."""
    target, sep, name = spec.rpartition(":")
    if not sep or not target or not name:
        raise error(f"{what} {spec!r} must look like path/to/file.py:name or package.module:name")
    module = _import_file(Path(target), what, error) if target.endswith(".py") else _import_module(target, what, error)
    if not hasattr(module, name):
        found = sorted(n for n, v in vars(module).items() if callable(v) and not n.startswith("_") and getattr(v, "__module__", None) == module.__name__)
        raise error(f"{what} {spec!r}: {target} has no attribute {name!r} (functions there: {', '.join(found) or 'none'})")
    return getattr(module, name)


def load_callable(spec: str, what: str = "factory", error: type[UserError] = ConfigError) -> Callable[..., Any]:
    fn = load_reference(spec, what, error)
    if not callable(fn):
        raise error(f"{what} {spec!r} is not callable")
    return fn


def _import_file(path: Path, what: str, error: type[UserError]):
    if not path.is_file():
        raise error(f"{what} file not found: {path}")
    name = f"_trtcompress_user_{abs(hash(str(path.resolve())))}"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise error(f"{path} is not a Python file that can be imported")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # registered, so classes defined there pickle and dataclasses work
    sys.path.insert(0, str(path.parent.resolve()))  # the file may import its neighbours
    try:
        spec.loader.exec_module(module)
    except Exception as e:
        del sys.modules[name]
        raise error(f"importing {path} failed: {type(e).__name__}: {e}") from e
    finally:
        sys.path.pop(0)
    return module


def _import_module(target: str, what: str, error: type[UserError]):
    try:
        return importlib.import_module(target)
    except ImportError as e:
        raise error(f"cannot import module {target!r} for the {what} ({e}); check the name and that it is installed") from e


def absolute_reference(spec: str) -> str:
    """``spec`` with a ``file.py`` path made absolute (a process elsewhere, such as a Ray worker,
    has another working directory); a ``package.module:name`` or anything else unchanged."""
    target, sep, name = spec.rpartition(":")
    if sep and target.endswith(".py") and Path(target).is_file():
        return f"{Path(target).resolve()}:{name}"
    return spec
