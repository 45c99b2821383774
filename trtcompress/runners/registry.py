"""Backend registry: name -> factory(model_path, options) returning a Polygraphy runner."""
from __future__ import annotations

import dataclasses
import importlib
import os
from typing import Any, Callable

from ..config import Config
from ..errors import ConfigError
from ..sessions import OPTIMIZATION_LEVELS

__all__ = ["RunnerOptions", "make_runner", "register_backend", "registered_backends", "ENGINE_SUFFIXES"]


# serialized TensorRT engines: files that are not ONNX and are run as they are
ENGINE_SUFFIXES = (".engine", ".plan", ".trt")


@dataclasses.dataclass(frozen=True)
class RunnerOptions(Config):
    """Options shared by backends. ``threads=0`` lets the backend choose."""

    threads: int = 0
    providers: tuple[str, ...] = ("cpu",)
    optimization: str = "all"  # onnxrt graph optimisation: disable, basic, extended, all
    plugins: tuple[str, ...] = ()  # trt: plugin libraries / Python plugins (trtcompress.trt.plugins)

    def validate(self) -> None:
        if self.threads < 0:
            raise ConfigError("threads must be >= 0")
        if self.optimization not in OPTIMIZATION_LEVELS:
            raise ConfigError(f"optimization must be disable, basic, extended or all, got {self.optimization!r}")


Factory = Callable[[str, RunnerOptions], Any]
_BACKENDS: dict[str, Factory] = {}
# backends whose modules import heavy dependencies are registered on first use
_LAZY = {"onnxrt": ".onnxrt", "trt": ".trt"}


def register_backend(name: str) -> Callable[[Factory], Factory]:
    def deco(fn: Factory) -> Factory:
        _BACKENDS[name] = fn
        return fn

    return deco


def registered_backends() -> list[str]:
    return sorted(set(_BACKENDS) | set(_LAZY))


def make_runner(model_path: str | os.PathLike, backend: str = "onnxrt", options: RunnerOptions | None = None, name: str | None = None):
    """A Polygraphy runner for ``model_path`` on ``backend`` (not yet activated). A TensorRT
    engine file runs on ``trt`` whatever the backend asked (no other backend can run it)."""
    if str(model_path).endswith(ENGINE_SUFFIXES):
        backend = "trt"
    if backend not in _BACKENDS and backend in _LAZY:
        importlib.import_module(_LAZY[backend], __package__)
    if backend not in _BACKENDS:
        raise ConfigError(f"unknown backend {backend!r}; choose one of {', '.join(registered_backends())}")
    runner = _BACKENDS[backend](str(model_path), options or RunnerOptions())
    if name:
        runner.name = name
    return runner
