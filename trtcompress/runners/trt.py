"""TensorRT backend through Polygraphy's loaders and runner (tensorrt is imported only here).

An ``.onnx`` path is parsed and built (explicit Q/DQ models build INT8 on TensorRT 8.6, 10 and 11
with no precision flags); an ``.engine``/``.plan`` path is deserialised.
"""
from __future__ import annotations

import functools
from pathlib import Path

from .._optional import require
from ..errors import ModelError
from .registry import ENGINE_SUFFIXES, RunnerOptions, register_backend


@register_backend("trt")
def trt_runner(model_path: str, options: RunnerOptions):
    trt = require("tensorrt", "the TensorRT backend")
    from . import _polygraphy  # noqa: F401  (before Polygraphy logs anything)
    from polygraphy.backend import trt as ptrt

    path = Path(model_path)
    if path.suffix in ENGINE_SUFFIXES:
        loader = _engine_loader(path, trt.__version__)
    else:
        loader = ptrt.EngineFromNetwork(ptrt.NetworkFromOnnxPath(str(path)), config=ptrt.CreateConfig())
    # memoised: a runner re-activated for every benchmark turn builds or deserialises its engine
    # once and only creates a new execution context
    return ptrt.TrtRunner(functools.cache(loader), name=f"trt:{model_path}")


def _engine_loader(path: Path, version: str):
    """A callable that deserialises the engine, for ``TrtRunner`` (which accepts one)."""
    if not path.is_file():
        raise ModelError(f"engine file not found: {path}")
    data = path.read_bytes()

    def load():
        import tensorrt as trt

        runtime = trt.Runtime(trt.Logger(trt.Logger.ERROR))
        engine = runtime.deserialize_cuda_engine(data)
        if engine is None:
            raise ModelError(
                f"{path} cannot be deserialised by TensorRT {version}: it was built with another TensorRT "
                "version or GPU, or is corrupt; rebuild it from the ONNX on this machine"
            )
        return engine

    return load
