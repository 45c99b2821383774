"""Typed configs: frozen dataclasses that validate on construction and round-trip through JSON."""
from __future__ import annotations

import dataclasses
import json
import typing
from typing import Any, ClassVar, TypeVar

from .errors import ConfigError

__all__ = ["Config"]

C = TypeVar("C", bound="Config")


@dataclasses.dataclass(frozen=True)
class Config:
    """Base of every stage config. Subclasses add fields and override :meth:`validate`."""

    version: ClassVar[int] = 1

    def __post_init__(self) -> None:
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
        hints = typing.get_type_hints(cls)
        kwargs = {k: _coerce(hints.get(k), v) for k, v in data.items()}
        return cls(**kwargs)

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


def _coerce(hint: Any, v: Any) -> Any:
    """JSON gives lists where configs hold tuples (configs are frozen and hashable)."""
    origin = typing.get_origin(hint)
    if isinstance(v, list) and (origin is tuple or hint is tuple or _union_has_tuple(hint)):
        return tuple(v)
    if isinstance(hint, type) and issubclass(hint, Config) and isinstance(v, dict):
        return hint.from_dict(v)
    return v


def _union_has_tuple(hint: Any) -> bool:
    return any(typing.get_origin(a) is tuple for a in typing.get_args(hint))
