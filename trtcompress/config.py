"""Typed configs: frozen dataclasses that validate on construction and round-trip through JSON.

Every field is checked against its type hint on construction (from Python, a recipe or the CLI):
a wrong type is a one-line :class:`ConfigError` naming the config, the field and the expected
type. Nothing is parsed out of strings: ``"false"`` is not a bool and ``"16"`` is not an int, so
a recipe typo cannot silently turn an option on. Lists become tuples (configs are hashable) and an
int is accepted where a float is expected.
"""
from __future__ import annotations

import dataclasses
import json
import numbers
import os
import functools
import types
import typing
from typing import Any, ClassVar, Literal, TypeVar, Union

from .errors import ConfigError

__all__ = ["Config"]

C = TypeVar("C", bound="Config")


@dataclasses.dataclass(frozen=True)
class Config:
    """Base of every stage config. Subclasses add fields and override :meth:`validate`."""

    version: ClassVar[int] = 1

    def __post_init__(self) -> None:
        hints = _hints(type(self))
        for f in dataclasses.fields(self):
            hint = hints.get(f.name)
            if hint is None:
                continue
            value = getattr(self, f.name)
            checked = _check(hint, value, f"{type(self).__name__}.{f.name}")
            if checked is not value:
                object.__setattr__(self, f.name, checked)
        self.validate()

    def validate(self) -> None:
        """Raise :class:`ConfigError` on an invalid value."""

    def to_dict(self) -> dict[str, Any]:
        d = {f.name: _plain(getattr(self, f.name)) for f in dataclasses.fields(self)}
        d["config_version"] = self.version
        return d

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    @classmethod
    def from_dict(cls: type[C], data: dict[str, Any]) -> C:
        data = dict(data)
        version = data.pop("config_version", cls.version)
        if version != cls.version:
            raise ConfigError(f"{cls.__name__}: config version {version} is not supported (expected {cls.version})")
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise ConfigError(f"{cls.__name__}: unknown option(s) {', '.join(unknown)}; known: {', '.join(sorted(names))}")
        return cls(**data)  # __post_init__ checks the types (JSON lists become tuples, mappings nested configs)

    @classmethod
    def from_json(cls: type[C], text: str) -> C:
        return cls.from_dict(json.loads(text))

    def replace(self: C, **changes: Any) -> C:
        return dataclasses.replace(self, **changes)


def _plain(v: Any) -> Any:
    if isinstance(v, tuple):
        return [_plain(x) for x in v]
    if isinstance(v, Config):
        return v.to_dict()
    if isinstance(v, dict):
        return {k: _plain(x) for k, x in v.items()}
    return v


@functools.lru_cache(maxsize=None)
def _hints(cls: type) -> dict[str, Any]:
    return {k: v for k, v in typing.get_type_hints(cls).items() if typing.get_origin(v) is not ClassVar}


def type_name(hint: Any) -> str:
    """A type hint as a user reads it: ``int or null``, ``list of str``, ``one of 'a', 'b'``."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if hint is type(None):
        return "null"
    if origin in (Union, types.UnionType):
        return " or ".join(type_name(a) for a in args)
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in args)
    if origin is tuple:
        if len(args) == 2 and args[1] is Ellipsis:
            return f"list of {type_name(args[0])}"
        return "list of " + str(len(args)) + " (" + ", ".join(type_name(a) for a in args) + ")"
    if origin is dict:
        return f"mapping of {type_name(args[0])} to {type_name(args[1])}"
    if isinstance(hint, type) and issubclass(hint, Config):
        return f"{hint.__name__} (a mapping)"
    return getattr(hint, "__name__", str(hint))


def _check(hint: Any, value: Any, where: str) -> Any:
    """``value`` checked against ``hint`` (lists made tuples, ints made floats), or ConfigError."""
    ok, out = _conform(hint, value)
    if not ok:
        shown = repr(value) if len(repr(value)) <= 60 else repr(value)[:57] + "..."
        raise ConfigError(f"{where} must be {type_name(hint)}, got {type(value).__name__} {shown}")
    return out


_NO = (False, None)


def _conform(hint: Any, value: Any) -> tuple[bool, Any]:
    if hint is Any or hint is object:
        return True, value
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if hint is type(None) or hint is None:
        return value is None, value
    if origin in (Union, types.UnionType):
        for a in args:
            ok, out = _conform(a, value)
            if ok:
                return ok, out
        return _NO
    if origin is Literal:
        # True == 1: a choice matches only a value of its own type
        return any(type(a) is type(value) and a == value for a in args), value
    if origin is tuple or hint is tuple:
        if not isinstance(value, (tuple, list)):
            return _NO
        if not args:
            return True, tuple(value)
        items = args[:1] * len(value) if len(args) == 2 and args[1] is Ellipsis else args
        if len(items) != len(value):
            return _NO
        out = []
        for a, v in zip(items, value):
            ok, o = _conform(a, v)
            if not ok:
                return _NO
            out.append(o)
        return True, tuple(out)
    if origin is dict or hint is dict:
        if not isinstance(value, dict):
            return _NO
        if not args:
            return True, value
        out_d = {}
        for k, v in value.items():
            ok_k, k2 = _conform(args[0], k)
            ok_v, v2 = _conform(args[1], v)
            if not (ok_k and ok_v):
                return _NO
            out_d[k2] = v2
        return True, out_d
    if hint is str and isinstance(value, os.PathLike):
        return True, os.fspath(value)  # a path where a path string is expected
    if hint is bool:
        return isinstance(value, bool), value
    # numbers.Integral / Real take numpy scalars too (a count or a threshold computed with numpy)
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, numbers.Integral):
            return _NO
        return True, (value if type(value) is int else int(value))
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, numbers.Real):
            return _NO
        return True, (value if type(value) is float else float(value))
    if isinstance(hint, type) and issubclass(hint, Config) and isinstance(value, dict):
        return True, hint.from_dict(value)
    if isinstance(hint, type):
        return isinstance(value, hint), value
    return True, value  # a hint this checker does not know (a Protocol, a TypeVar): trust it
