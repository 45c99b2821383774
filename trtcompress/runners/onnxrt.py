"""ONNX Runtime backend (CPU; the CUDA provider when asked for and present)."""
from __future__ import annotations

from typing import Any

from . import _polygraphy  # noqa: F401  (before Polygraphy logs anything)
from polygraphy.backend.onnxrt import OnnxrtRunner

from ..model_io import require_model_file
from ..sessions import SessionConfig, open_session
from .registry import RunnerOptions, register_backend


def session_config(options: RunnerOptions) -> SessionConfig:
    """The session settings of the runner options (their ``plugins`` are TensorRT's)."""
    return SessionConfig(threads=options.threads, providers=options.providers, optimization=options.optimization)


def make_session(model: str | bytes, options: RunnerOptions) -> Any:
    """A session on ``model`` (a path or serialized bytes) as the runner makes it."""
    return open_session(model, session_config(options))


@register_backend("onnxrt")
def onnxrt_runner(model_path: str, options: RunnerOptions) -> OnnxrtRunner:
    require_model_file(model_path)
    return OnnxrtRunner(lambda: make_session(model_path, options), name=f"onnxrt:{model_path}")
