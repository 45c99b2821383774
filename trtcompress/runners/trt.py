"""TensorRT backend: Polygraphy's ``TrtRunner`` on an engine from ``trtcompress.trt``.

- ``.onnx``: planned for the installed TensorRT by ``trtcompress.trt.plan`` (profiles from the
  dynamic dimensions, INT8 flag or strong typing per version, 2:4 when the weights follow it) and
  built in memory through ``trtcompress.trt.loaders``, once per runner;
- ``.engine``/``.plan``/``.trt``: the sidecar is checked against this TensorRT and GPU, then
  Polygraphy's ``EngineFromPath`` loads it.

``infer`` is Polygraphy's (host arrays in and out, so ``compare`` works as with ONNX Runtime).
``gpu_latency_ms`` measures what trtexec reports as GPU compute time: CUDA events around
``execute_async_v3`` on device buffers filled once, no host copies in the timed region,
optionally replaying a CUDA graph of one inference.
"""
from __future__ import annotations

import functools
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from .._optional import require
from ..errors import UserError
from .registry import ENGINE_SUFFIXES, RunnerOptions, register_backend

__all__ = ["trt_runner", "gpu_latency_ms"]


def _onnx_engine_loader(path: Path, options: RunnerOptions):
    from ..trt.build import plan_build
    from ..trt.config import BuildConfig
    from ..trt.loaders import build_loaders
    from ..trt.plugins import load_plugins, split_plugins
    from ..trt.version import installed_version

    plan = plan_build(path, BuildConfig(plugins=tuple(options.plugins)), installed_version())
    load_plugins(split_plugins(plan.plugins)[1])
    return build_loaders(plan, str(path)).engine


@register_backend("trt")
def trt_runner(model_path: str, options: RunnerOptions):
    require("tensorrt", "the TensorRT backend")
    from . import _polygraphy  # noqa: F401  (before Polygraphy logs anything)
    from polygraphy.backend.trt import TrtRunner

    from ..trt.engine import engine_loader

    from ..trt.build import run_with_trt_log

    path = Path(model_path)
    if path.suffix in ENGINE_SUFFIXES:
        inner, failure = engine_loader(path, tuple(options.plugins) or None), f"TensorRT cannot load {path}"
    else:
        inner, failure = _onnx_engine_loader(path, options), f"TensorRT could not build {path}"

    def loader():  # one-line errors with TensorRT's reason, its log kept off the console
        return run_with_trt_log(inner, failure)[0]

    class EngineRunner(TrtRunner):
        def gpu_latency_ms(self, feed: Mapping[str, np.ndarray], iterations: int, warmup: int = 10, cuda_graph: bool = False) -> tuple[list[float], dict[str, Any]]:
            return gpu_latency_ms(self.engine, feed, iterations, warmup, cuda_graph)

    # memoised: a runner re-activated for every benchmark turn builds or deserialises its engine
    # once and only creates a new execution context
    return EngineRunner(functools.cache(loader), name=f"trt:{model_path}")


def gpu_latency_ms(engine, feed: Mapping[str, np.ndarray], iterations: int, warmup: int = 10, cuda_graph: bool = False) -> tuple[list[float], dict[str, Any]]:
    """Per-inference GPU time in ms (CUDA events) and memory facts, on a fresh execution context."""
    import tensorrt as trt

    from ..trt.gpu import gpu_api

    api = gpu_api()
    before = api.used_memory()
    context = engine.create_execution_context()
    stream = api.stream()
    buffers: list[int] = []
    hosts: list[np.ndarray] = []  # alive until the copies have run
    try:
        names = [engine.get_tensor_name(i) for i in range(engine.num_io_tensors)]
        for name in names:
            if engine.get_tensor_mode(name) == trt.TensorIOMode.INPUT:
                host = np.ascontiguousarray(feed[name], dtype=trt.nptype(engine.get_tensor_dtype(name)))
                hosts.append(host)
                if not context.set_input_shape(name, host.shape):
                    raise UserError(f"input {name} of shape {host.shape} is outside the engine's optimization profile; rebuild it with --shapes covering it")
                ptr = api.malloc(host.nbytes)
                buffers.append(ptr)
                api.memcpy_htod(ptr, host, stream)
                context.set_tensor_address(name, ptr)
        for name in names:
            if engine.get_tensor_mode(name) == trt.TensorIOMode.OUTPUT:
                shape = tuple(context.get_tensor_shape(name))
                if any(d < 0 for d in shape):
                    raise UserError(f"output {name} has a data-dependent shape {shape}; GPU timing needs static output shapes")
                nbytes = int(np.prod(shape)) * np.dtype(trt.nptype(engine.get_tensor_dtype(name))).itemsize
                ptr = api.malloc(nbytes)
                buffers.append(ptr)
                context.set_tensor_address(name, ptr)
        api.synchronize(stream)

        def once() -> None:
            if not context.execute_async_v3(stream):  # noqa: F821 (ruff reads the finally's del as unbinding it here)
                raise UserError("TensorRT execute_async_v3 failed (see the TensorRT log)")

        for _ in range(max(1, warmup)):  # also lets TensorRT finish shape-dependent setup before capture
            once()
        run = once
        if cuda_graph:
            api.synchronize(stream)
            api.begin_capture(stream)
            once()
            graph = api.end_capture(stream)
            run = lambda: api.launch_graph(graph, stream)  # noqa: E731
            run()
        api.synchronize(stream)
        start, end = api.event(), api.event()
        times = []
        for _ in range(iterations):
            api.record(start, stream)
            run()
            api.record(end, stream)
            times.append(api.elapsed_ms(start, end))
        memory = {"gpu_memory_used_bytes": api.used_memory() - before, "engine_device_memory_bytes": int(getattr(engine, "device_memory_size_v2", None) or getattr(engine, "device_memory_size", 0) or 0), "cuda_graph": cuda_graph, "gpu_api": api.name}
        return times, memory
    finally:
        api.synchronize(stream)
        for ptr in buffers:
            api.free(ptr)
        del context
