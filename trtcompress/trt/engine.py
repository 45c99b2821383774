"""Loading an engine: the sidecar check first, then Polygraphy's ``EngineFromPath``.

``EngineFromPath`` initialises TensorRT's plugin registry and grants host-code permission for
version-compatible engines, which hand-rolled ``Runtime.deserialize_cuda_engine`` skips.
"""
from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

from .._optional import require
from ..errors import MissingDependencyError, ModelError
from ..runners.registry import ENGINE_SUFFIXES

__all__ = ["engine_loader", "ENGINE_SUFFIXES"]

log = logging.getLogger(__name__)



def engine_loader(path: str | os.PathLike, plugins: tuple[str, ...] | None = None, allow_stripped: bool = False) -> Any:
    """A Polygraphy engine loader for ``path`` after checking its sidecar against this machine's
    TensorRT and GPU; ``plugins`` default to the ones the engine was built with. A weight-stripped
    plan is refused unless ``allow_stripped`` (only refit loads one): it lacks its refittable weights until refitted."""
    trt = require("tensorrt", "running TensorRT engines")
    from .gpu import device_info
    from .loaders import engine_from_path
    from .plugins import resolve_plugins
    from .sidecar import check_sidecar

    path = Path(path)
    if not path.is_file():
        raise ModelError(f"engine file not found: {path}")
    try:
        gpu = device_info()
    except MissingDependencyError as e:  # Polygraphy runs the engine without cuda-python/torch
        log.warning("cannot read this GPU's name and compute capability (%s): %s is checked against the TensorRT version only", e, path)
        gpu = None
    sidecar = check_sidecar(path, trt.__version__, gpu)
    if not allow_stripped and ((sidecar or {}).get("refit") or {}).get("stripped"):
        raise ModelError(f"{path} is a weight-stripped plan: refit it first (trtcompress refit {path} ARTIFACT -o OUT) and run the refitted engine")
    if plugins is None:
        plugins = tuple((sidecar or {}).get("build_options", {}).get("plugins") or ())
    return engine_from_path(str(path), resolve_plugins(plugins))
