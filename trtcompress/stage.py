"""The stage interface every transformation plugs into.

A stage is a function ``(model, config) -> StageResult``: it takes a model (an
``onnx.ModelProto`` for ONNX stages, an ``nn.Module`` for torch stages) and a frozen, typed
:class:`~trtcompress.config.Config`, and returns the new model with a JSON-serialisable report.
Stages are registered by config type, so a pipeline is just a list of configs. A stage declares
its contract when it registers (``ensures``, ``after``; see :mod:`trtcompress.contracts`), which
the pipeline checks.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Callable, Mapping, Protocol, TypeVar

from .config import Config
from .contracts import PROPERTIES, After

__all__ = ["StageResult", "StageFn", "register_stage", "get_stage", "registered_stages"]


@dataclasses.dataclass
class StageResult:
    """What a stage returns.

    ``model`` is the transformed model. ``report`` holds JSON-serialisable numbers and lists.
    ``artifacts`` maps file names to contents (``str`` or ``bytes``) that the pipeline writes into
    the run directory, for example a TensorRT calibration cache.
    """

    model: Any
    report: dict[str, Any] = dataclasses.field(default_factory=dict)
    artifacts: dict[str, str | bytes] = dataclasses.field(default_factory=dict)


class StageFn(Protocol):
    def __call__(self, model: Any, config: Any) -> StageResult: ...


@dataclasses.dataclass(frozen=True)
class _Entry:
    name: str
    fn: StageFn
    config_type: type[Config]
    ensures: tuple[str, ...] = ()  # properties its output has (trtcompress.contracts.PROPERTIES)
    after: Mapping[str, After] = dataclasses.field(default_factory=dict)  # what it does to established ones


_REGISTRY: dict[type[Config], _Entry] = {}
_BY_NAME: dict[str, _Entry] = {}

F = TypeVar("F", bound=Callable[..., StageResult])


def register_stage(name: str, config_type: type[Config], ensures: tuple[str, ...] = (), after: Mapping[str, After] | None = None) -> Callable[[F], F]:
    """Decorator: register ``fn`` as the stage that handles ``config_type``, with its contract:
    ``ensures`` (properties its output has) and ``after`` (property an earlier stage established
    -> refuse or warn, with the reason)."""
    unknown = sorted((set(ensures) | set(after or {})) - set(PROPERTIES))
    if unknown:
        raise ValueError(f"stage {name!r}: unknown properties {unknown}; known: {sorted(PROPERTIES)}")

    def deco(fn: F) -> F:
        entry = _Entry(name, fn, config_type, tuple(ensures), dict(after or {}))
        _REGISTRY[config_type] = entry
        _BY_NAME[name] = entry
        fn.stage_name = name  # type: ignore[attr-defined]
        fn.stage_entry = entry  # type: ignore[attr-defined]
        return fn

    return deco


def get_stage(key: type[Config] | Config | str) -> _Entry:
    """Look a stage up by config type, config instance or name."""
    _load_builtin_stages()
    if isinstance(key, str):
        if key not in _BY_NAME:
            raise KeyError(f"unknown stage {key!r}; known: {', '.join(sorted(_BY_NAME))}")
        return _BY_NAME[key]
    t = key if isinstance(key, type) else type(key)
    if t not in _REGISTRY:
        raise KeyError(f"no stage registered for {t.__name__}")
    return _REGISTRY[t]


def registered_stages() -> dict[str, type[Config]]:
    _load_builtin_stages()
    return {name: e.config_type for name, e in _BY_NAME.items()}


def _load_builtin_stages() -> None:
    """Stages register on import of their module; import the built-in ones on first lookup."""
    import importlib

    from .stages import BUILTIN

    for name in BUILTIN:
        importlib.import_module(f"{__package__}.stages.{name}")
