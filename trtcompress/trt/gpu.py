"""The few CUDA runtime calls the engine benchmark and the sidecar need, through cuda-python
(``cuda.bindings.runtime``; a Jetson without torch has it) or torch when cuda-python is missing.

Registry by name: ``GPU_APIS["cuda-python"]``, ``GPU_APIS["torch"]``; :func:`gpu_api` picks the
first that imports. Pointers are plain ints, as ``IExecutionContext.set_tensor_address`` takes them.
"""
from __future__ import annotations

from typing import Any, Callable

from ..errors import MissingDependencyError, UserError
from .sidecar import GpuInfo

__all__ = ["GpuApi", "gpu_api", "GPU_APIS", "device_info"]


class GpuApi:
    """Device memory, a stream, events and CUDA graphs on device 0."""

    name = ""

    def info(self) -> GpuInfo: ...
    def malloc(self, nbytes: int) -> int: ...
    def free(self, ptr: int) -> None: ...
    def memcpy_htod(self, ptr: int, host: Any, stream: int) -> None: ...
    def stream(self) -> int: ...
    def synchronize(self, stream: int) -> None: ...
    def event(self) -> Any: ...
    def record(self, event: Any, stream: int) -> None: ...
    def elapsed_ms(self, start: Any, end: Any) -> float: ...
    def begin_capture(self, stream: int) -> None: ...
    def end_capture(self, stream: int) -> Any: ...
    def launch_graph(self, graph: Any, stream: int) -> None: ...
    def used_memory(self) -> int: ...


class _CudaPython(GpuApi):
    name = "cuda-python"

    def __init__(self) -> None:
        from .._optional import available, require

        # cuda-python 12.6+ names it cuda.bindings.runtime; 12.0 - 12.5 cuda.cudart
        name = "cuda.bindings.runtime" if available("cuda.bindings.runtime") else "cuda.cudart"
        self.rt = require(name, "GPU buffers of the TensorRT benchmark")

    def _ok(self, result):
        err, *rest = result if isinstance(result, tuple) else (result,)
        if int(err) != 0:
            raise UserError(f"CUDA error {err}: {self.rt.cudaGetErrorString(err)[1].decode() if hasattr(self.rt, 'cudaGetErrorString') else ''}")
        return rest[0] if len(rest) == 1 else rest

    def info(self) -> GpuInfo:
        props = self._ok(self.rt.cudaGetDeviceProperties(0))
        name = props.name.decode().rstrip("\x00") if isinstance(props.name, bytes) else str(props.name)
        return GpuInfo(name, f"{props.major}.{props.minor}", int(props.totalGlobalMem))

    def malloc(self, nbytes):
        return int(self._ok(self.rt.cudaMalloc(max(1, nbytes))))

    def free(self, ptr):
        self._ok(self.rt.cudaFree(ptr))

    def memcpy_htod(self, ptr, host, stream):
        self._ok(self.rt.cudaMemcpyAsync(ptr, host.ctypes.data, host.nbytes, self.rt.cudaMemcpyKind.cudaMemcpyHostToDevice, stream))

    def stream(self):
        return int(self._ok(self.rt.cudaStreamCreate()))

    def synchronize(self, stream):
        self._ok(self.rt.cudaStreamSynchronize(stream))

    def event(self):
        return self._ok(self.rt.cudaEventCreate())

    def record(self, event, stream):
        self._ok(self.rt.cudaEventRecord(event, stream))

    def elapsed_ms(self, start, end):
        self._ok(self.rt.cudaEventSynchronize(end))
        return float(self._ok(self.rt.cudaEventElapsedTime(start, end)))

    def begin_capture(self, stream):
        self._ok(self.rt.cudaStreamBeginCapture(stream, self.rt.cudaStreamCaptureMode.cudaStreamCaptureModeThreadLocal))

    def end_capture(self, stream):
        graph = self._ok(self.rt.cudaStreamEndCapture(stream))
        return self._ok(self.rt.cudaGraphInstantiate(graph, 0))

    def launch_graph(self, graph, stream):
        self._ok(self.rt.cudaGraphLaunch(graph, stream))

    def used_memory(self):
        free, total = self._ok(self.rt.cudaMemGetInfo())
        return int(total) - int(free)


class _Torch(GpuApi):
    name = "torch"

    def __init__(self) -> None:
        import torch

        if not torch.cuda.is_available():
            raise MissingDependencyError("torch sees no CUDA device")
        self.torch = torch
        self._keep: dict[int, Any] = {}
        self._streams: dict[int, Any] = {}

    def info(self):
        p = self.torch.cuda.get_device_properties(0)
        return GpuInfo(p.name, f"{p.major}.{p.minor}", int(p.total_memory))

    def malloc(self, nbytes):
        t = self.torch.empty(max(1, nbytes), dtype=self.torch.uint8, device="cuda")
        self._keep[t.data_ptr()] = t
        return t.data_ptr()

    def free(self, ptr):
        self._keep.pop(ptr, None)

    def memcpy_htod(self, ptr, host, stream):
        t = self._keep[ptr]
        src = self.torch.from_numpy(host.reshape(-1).view("uint8"))
        with self.torch.cuda.stream(self._streams[stream]):
            t[: host.nbytes].copy_(src, non_blocking=False)

    def stream(self):
        s = self.torch.cuda.Stream()
        self._streams[s.cuda_stream] = s
        return s.cuda_stream

    def synchronize(self, stream):
        self._streams[stream].synchronize()

    def event(self):
        return self.torch.cuda.Event(enable_timing=True)

    def record(self, event, stream):
        event.record(self._streams[stream])

    def elapsed_ms(self, start, end):
        end.synchronize()
        return float(start.elapsed_time(end))

    def begin_capture(self, stream):
        self._graph = self.torch.cuda.CUDAGraph()
        self._ctx = self.torch.cuda.graph(self._graph, stream=self._streams[stream])
        self._ctx.__enter__()

    def end_capture(self, stream):
        self._ctx.__exit__(None, None, None)
        return self._graph

    def launch_graph(self, graph, stream):
        with self.torch.cuda.stream(self._streams[stream]):
            graph.replay()

    def used_memory(self):
        free, total = self.torch.cuda.mem_get_info()
        return int(total - free)


GPU_APIS: dict[str, Callable[[], GpuApi]] = {"cuda-python": _CudaPython, "torch": _Torch}


def gpu_api() -> GpuApi:
    """The first of cuda-python, torch that imports and sees a GPU."""
    errors = []
    for name, make in GPU_APIS.items():
        try:
            return make()
        except (ImportError, UserError, RuntimeError) as e:
            errors.append(f"{name}: {e}")
    raise MissingDependencyError(f"no CUDA runtime for GPU buffers ({'; '.join(errors)}); run: pip install 'trtcompress[trt]' (installs cuda-python)")


def device_info() -> GpuInfo:
    return gpu_api().info()
