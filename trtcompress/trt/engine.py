"""Loading an engine: the sidecar check first, then Polygraphy's ``EngineFromPath``.

``EngineFromPath`` initialises TensorRT's plugin registry and grants host-code permission for
version-compatible engines, which hand-rolled ``Runtime.deserialize_cuda_engine`` skips.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from .._optional import require
from ..errors import ModelError

__all__ = ["engine_loader", "ENGINE_SUFFIXES"]

ENGINE_SUFFIXES = (".engine", ".plan", ".trt")


def engine_loader(path: str | os.PathLike, plugins: tuple[str, ...] | None = None) -> Any:
    """A Polygraphy engine loader for ``path`` after checking its sidecar against this machine's
    TensorRT and GPU; ``plugins`` default to the ones the engine was built with."""
    trt = require("tensorrt", "running TensorRT engines")
    from .gpu import device_info
    from .loaders import engine_from_path
    from .plugins import resolve_plugins
    from .sidecar import check_sidecar

    path = Path(path)
    if not path.is_file():
        raise ModelError(f"engine file not found: {path}")
    sidecar = check_sidecar(path, trt.__version__, device_info())
    if plugins is None:
        plugins = tuple((sidecar or {}).get("build_options", {}).get("plugins") or ())
    return engine_from_path(str(path), resolve_plugins(plugins))
