"""Calibration: one streaming ONNX Runtime pass collects histograms, a method turns them into amax.

``collect_statistics`` exposes the tensors to calibrate as extra graph outputs, runs the FP32
model over the data once and adds every batch to per-tensor :class:`AbsHistogram` s (memory
bounded by tensors x bins, whatever the data size); tensors that need only their max are reduced
inside the graph instead. ``compute_amax`` applies a method to every histogram; ``calibrate``
does both.
"""
from __future__ import annotations

import contextlib
import dataclasses
import math
import os
import queue
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Mapping, Sequence

import numpy as np
import onnx

from .._optional import require
from ..config import Config
from ..data.base import Feed, FeedSource, batch_size_of, model_inputs, rebatch, validate_feed
from ..errors import ConfigError, DataError, ModelError, UserError
from ..model_io import infer_shapes, load_model
from ..progress import Progress, known_length
from ..sessions import SessionConfig, open_session
from ..weightless import has_external_data
from . import _kernels
from ._kernels import KERNELS
from .histogram import DEFAULT_BINS
from .methods.registry import check_options, get_method
from .stats import Statistics
from .table import CalibrationTable

__all__ = ["CollectConfig", "collect_statistics", "compute_amax", "calibrate"]

@dataclasses.dataclass(frozen=True)
class CollectConfig(Config):
    """How statistics are collected.

    ``bins``: histogram bins on the power-of-two range (a power of two; the methods regroup them
    into at most 2048 over [0, max]). ``threads``: ONNX Runtime intra-op threads (0: its default).
    ``overlap``: run the model on the next batch while the current one is histogrammed (off by
    default: counting already keeps ``workers`` threads busy, and on 2 cores the overlap made
    EfficientNet-Lite0's pass 0.3-0.5 s slower while the Fashion models gained nothing).
    ``kernel``: how values are counted (``auto``: the compiled kernel when built, else numpy; same
    result). ``workers``: threads counting tensors at once (the compiled kernel releases the GIL,
    numpy in all but ``bincount``).
    """

    bins: int = DEFAULT_BINS
    threads: int = 0
    overlap: bool = False
    kernel: str = "auto"
    workers: int = 2
    progress: bool = True
    providers: tuple[str, ...] = ("CPUExecutionProvider",)

    def validate(self) -> None:
        if self.bins < 256 or self.bins & (self.bins - 1):
            raise ConfigError(f"bins must be a power of two >= 256, got {self.bins}")
        if self.threads < 0:
            raise ConfigError(f"threads must be >= 0, got {self.threads}")
        if self.kernel not in KERNELS:
            raise ConfigError(f"kernel must be one of {', '.join(KERNELS)}, got {self.kernel!r}")
        if self.workers < 1:
            raise ConfigError(f"workers must be >= 1, got {self.workers}")


def collect_statistics(
    model: onnx.ModelProto | str | os.PathLike,
    tensors: Sequence[str],
    source: FeedSource | Iterable[Feed],
    config: CollectConfig | None = None,
    max_only: Mapping[str, float | None] | Iterable[str] = (),
) -> Statistics:
    """Histograms of |x| for ``tensors`` over every feed of ``source`` (one ONNX Runtime pass).

    Tensors in ``max_only`` get only their max |x|, reduced inside the graph: the tensor never
    leaves ONNX Runtime. For the ReLU6 outputs of a MobileNet-style network (90% of the values
    EfficientNet-Lite0 would otherwise histogram) that is all the range rule reads. Given as a
    mapping, a tensor's bound (its max can never exceed it: 6 for a ReLU6) ends its reduction
    once reached, which makes the rest of the pass cheaper.
    """
    config = config or CollectConfig()
    tensors = list(dict.fromkeys(tensors))
    if not tensors:
        raise ConfigError("no tensors to calibrate")
    proto, base_dir = _load(model)
    inputs = model_inputs(proto)
    _check_tensors(proto, tensors)
    bounds = dict(max_only) if isinstance(max_only, Mapping) else dict.fromkeys(max_only)
    stats = Statistics.empty(tensors, config.bins, bounds)
    counted = list(stats.histograms)
    fixed_batch = _fixed_batch(inputs)
    if fixed_batch is not None:
        source = rebatch(source, fixed_batch, inputs=inputs)
    total = known_length(source)
    kernel = _kernels.resolve(config.kernel)
    with contextlib.ExitStack() as stack, ThreadPoolExecutor(config.workers) as pool:
        passes = _Passes(proto, counted, {t: bounds[t] for t in tensors if t in bounds}, base_dir, config, stack)
        bar = Progress("calibrating", total, unit="batch", enabled=config.progress)
        scratch = threading.local()  # per counting thread: a float buffer the numpy passes reuse
        try:
            for n, reduced, got in _run(passes.current, _validated(source, inputs), config.overlap):
                outputs, extremes = got[: len(counted)], got[len(counted) :]
                for name, value in zip(counted, outputs):
                    if value.dtype.kind != "f":
                        raise DataError(f"tensor {name!r} is {value.dtype}, not floating point; only float tensors are calibrated")
                for k, name in enumerate(reduced):
                    m = max(float(extremes[2 * k]), -float(extremes[2 * k + 1]))
                    if not math.isfinite(m):
                        raise DataError(f"tensor {name!r} is NaN or Inf on calibration batch {stats.num_batches}; check the model and this data")
                    stats.maxima[name] = max(stats.maxima[name], m)
                if config.workers > 1:
                    # largest first, so the workers finish together; the compiled kernel releases
                    # the GIL throughout, numpy's passes all but bincount
                    sizes = [o.size for o in outputs]
                    order = sorted(range(len(counted)), key=sizes.__getitem__, reverse=True)
                    jobs = [pool.submit(_add_to_histogram, stats.histograms[counted[k]], outputs[k], kernel, scratch) for k in order]
                    for job in jobs:
                        job.result()
                else:
                    for name, value in zip(counted, outputs):
                        _add_to_histogram(stats.histograms[name], value, kernel, scratch)
                del outputs, got
                passes.update(stats.maxima)
                stats.num_samples += n
                stats.num_batches += 1
                bar.update(1, samples=stats.num_samples)
        except BaseException:
            bar.close(failed=True)
            raise
        bar.close()
    if stats.num_batches == 0:
        raise DataError("the calibration data is empty; give at least one sample")
    stats.kernel = kernel
    return stats


def _add_to_histogram(hist, value: np.ndarray, kernel: str, scratch: threading.local) -> None:
    buf = None
    if kernel == "numpy" and value.dtype == np.float32:
        buf = getattr(scratch, "buf", None)
        if buf is None or buf.size < value.size:
            buf = scratch.buf = np.empty(value.size, np.float32)
    hist.add(value, buf, kernel)


def _reductions(tensor: str) -> tuple[str, str]:
    return f"{tensor}::calib_max", f"{tensor}::calib_min"


def compute_amax(stats: Statistics, method: str = "entropy", candidates: Sequence[str] = (), **options: Any) -> CalibrationTable:
    """Apply ``method`` (entropy, max, percentile, mse) with ``options`` to every histogram;
    tensors collected as max only take their max.

    ``candidates``: other methods (default options) whose amax is recorded per tensor in
    ``details["tensors"][t]["candidates"]``, for a later choice by the layers' error
    (``sensitivity.analyse``); they cost no data pass.
    """
    fn = get_method(method)
    check_options(method, fn, options)
    others = {c: get_method(c) for c in candidates if c != method}

    def apply(hist):
        return fn(hist, **options), {c: float(f(hist).amax) for c, f in others.items()}

    amax: dict[str, float] = {}
    per_tensor: dict[str, dict[str, Any]] = {}
    # the methods are vectorised numpy (which releases the GIL): tensors run two at a time
    with ThreadPoolExecutor(2) as pool:
        results = list(pool.map(apply, stats.histograms.values()))
    for (name, hist), (r, other) in zip(stats.histograms.items(), results):
        if not (r.amax > 0 and np.isfinite(r.amax)):
            raise DataError(f"tensor {name!r}: method {method} gave amax {r.amax}; check the data reaching this tensor")
        amax[name] = float(r.amax)
        info = {"max": hist.amax, "clipped": _clipped_fraction(hist, r.amax), **r.info}
        if hist.lo <= hist.hi:
            info["range"] = [hist.lo, hist.hi]
        if hist.nonfinite:
            info["nonfinite"] = hist.nonfinite
        if other:
            info["candidates"] = other
        per_tensor[name] = info
    for name, m in stats.maxima.items():
        amax[name] = m if m > 0 else 1.0  # all zeros: any scale is exact
        per_tensor[name] = {"max": m, "method": "max (no histogram collected)"}
    details = {"options": dict(options), "bins": stats.bins, "num_batches": stats.num_batches, "tensors": per_tensor}
    return CalibrationTable(amax, method, stats.num_samples, details)


def calibrate(
    model: onnx.ModelProto | str | os.PathLike,
    tensors: Sequence[str],
    source: FeedSource | Iterable[Feed],
    method: str = "entropy",
    config: CollectConfig | None = None,
    max_only: Mapping[str, float | None] | Iterable[str] = (),
    candidates: Sequence[str] = (),
    collector: Callable[..., Statistics] | None = None,
    **options: Any,
) -> CalibrationTable:
    """Collect statistics and compute the table in one call; timings go into ``details``.

    ``max_only``: tensors whose amax is their observed max whatever the method (with the max
    method, every tensor), so no histogram is collected for them. ``candidates``: see
    :func:`compute_amax`. ``collector``: what collects the statistics, called like
    :func:`collect_statistics` (default: that, in this process; the distributed collector takes
    shards as ``source`` and merges the statistics of its tasks)."""
    check_options(method, get_method(method), options)  # fail before the data pass
    t0 = time.perf_counter()
    if method == "max":
        max_only = {**dict.fromkeys(tensors), **(max_only if isinstance(max_only, Mapping) else {})}
    stats = (collector or collect_statistics)(model, tensors, source, config, max_only)
    t1 = time.perf_counter()
    table = compute_amax(stats, method, candidates, **options)
    t2 = time.perf_counter()
    table.details["seconds"] = {"collect": round(t1 - t0, 3), "method": round(t2 - t1, 3)}
    table.details["kernel"] = stats.kernel
    return table


def _clipped_fraction(hist, amax: float) -> float:
    """Share of values in bins wholly above the one holding ``amax`` (a lower bound, to bin resolution)."""
    if hist.exponent is None or hist.total == 0:
        return 0.0
    b = int(np.floor(amax / hist.bin_width)) + 1
    return float(hist.counts[b:].sum() / hist.total) if b < hist.bins else 0.0


# -- the model and its session ----------------------------------------------------------------------


def _load(model: onnx.ModelProto | str | os.PathLike) -> tuple[onnx.ModelProto, Path | None]:
    if isinstance(model, onnx.ModelProto):
        return model, None
    p = Path(model)
    return load_model(p, load_external_data=False, check=False), p.parent


def _check_tensors(proto: onnx.ModelProto, tensors: Sequence[str]) -> None:
    produced = {o for n in proto.graph.node for o in n.output} | {i.name for i in proto.graph.input}
    inits = {t.name for t in proto.graph.initializer}
    weights = [t for t in tensors if t in inits and t not in produced - inits]
    if weights:
        raise ConfigError(f"{', '.join(weights[:5])} are initialisers (weights): weights are quantized from their values, not calibrated")
    missing = [t for t in tensors if t not in produced]
    if missing:
        more = f" and {len(missing) - 5} more" if len(missing) > 5 else ""
        raise ModelError(f"tensor(s) {', '.join(missing[:5])}{more} are not in the model's graph; give tensor names the model produces")


def _fixed_batch(inputs) -> int | None:
    """The batch size a model with a fixed batch dimension accepts (``None``: any)."""
    dims = {i.shape[i.batch_axis] for i in inputs if i.batch_axis is not None}
    if len(dims) == 1:
        d = dims.pop()
        if isinstance(d, int):
            return d
    return None


def _validated(source, inputs) -> Iterator[tuple[int, Feed]]:
    for k, feed in enumerate(source):
        feed = validate_feed(feed, inputs, f"calibration batch {k}")
        yield batch_size_of(feed, inputs), feed


class _session:
    """An ONNX Runtime session on a copy of the model with ``tensors`` as extra outputs, plus the
    max and min of each ``reduced`` tensor."""

    def __init__(self, proto: onnx.ModelProto, tensors: Sequence[str], reduced: Sequence[str], base_dir: Path | None, config: CollectConfig, types: dict[str, int]):
        self.proto, self.tensors, self.reduced, self.base_dir, self.config, self.types = proto, tensors, reduced, base_dir, config, types
        self._tmp: Path | None = None

    def __enter__(self):
        require("onnxruntime", "calibration")  # the clear error before the copy is built
        m = _with_outputs(self.proto, self.tensors, self.reduced, self.types)
        # histograms are counted while ONNX Runtime runs the next batch: workers spinning between
        # ops would take the cores the counting needs
        session = SessionConfig(threads=self.config.threads, providers=self.config.providers, spinning=False)
        try:
            if has_external_data(m):
                # external data is found relative to the model file: write the copy beside it
                fd, tmp = tempfile.mkstemp(prefix=".calib-", suffix=".onnx", dir=self.base_dir)
                os.close(fd)
                self._tmp = Path(tmp)
                onnx.save_model(m, tmp)
                self.sess = open_session(tmp, session, name="the model for calibration", purpose="calibration")
            else:
                self.sess = open_session(m, session, name="the model for calibration", purpose="calibration")
        except UserError:
            self._cleanup()
            raise
        except Exception as e:
            self._cleanup()
            raise ModelError(f"ONNX Runtime cannot load the model for calibration: {str(e).strip().splitlines()[0]}") from e
        return self.sess

    def __exit__(self, *exc) -> None:
        self._cleanup()

    def _cleanup(self) -> None:
        if self._tmp is not None and self._tmp.exists():
            self._tmp.unlink()


def _with_outputs(proto: onnx.ModelProto, tensors: Sequence[str], reduced: Sequence[str], types: dict[str, int]) -> onnx.ModelProto:
    """A copy of ``proto`` with ``tensors`` as extra graph outputs, then the max and min of each
    ``reduced`` tensor (appended last: they read only existing tensors)."""
    import onnx_ir as ir

    model = ir.from_proto(proto)
    graph = model.graph
    values = {v.name: v for v in graph.inputs}
    values.update((o.name, o) for n in graph for o in n.outputs)
    have = {v.name for v in graph.outputs}

    def tensor_type(t: str) -> ir.TensorType:
        return ir.TensorType(ir.DataType(types.get(t, onnx.TensorProto.FLOAT)))

    for t in tensors:
        if t not in have:
            values[t].type = tensor_type(t)
            graph.outputs.append(values[t])
    for t in reduced:
        for op, out in zip(("ReduceMax", "ReduceMin"), _reductions(t)):
            y = ir.Value(name=out, type=tensor_type(t), shape=ir.Shape([]))
            graph.append(ir.node(op, [values[t]], {"keepdims": 0}, name=out, outputs=[y]))
            graph.outputs.append(y)
    return ir.to_proto(model)


class _Passes:
    """The pass's session, rebuilt without the reductions of tensors whose max reached its bound
    (it can grow no further): on EfficientNet-Lite0 the ReduceMax/ReduceMin of the ReLU6 outputs
    cost more than the model, and nearly all reach 6 in the first batch.

    A rebuild costs about half a batch (EfficientNet-Lite0, batch 8: 0.4 s against 0.8 s), so it
    waits for the next batch (none follows the last) and is made only when the reductions it drops
    cover at least ``REBUILD_SHARE`` of the values the session hands back or reduces per sample:
    the one ReLU6 output that reaches 6 a batch later is not worth a session."""

    MAX_REBUILDS = 4
    REBUILD_SHARE = 0.1

    def __init__(self, proto, counted: list[str], bounds: dict[str, float | None], base_dir, config: CollectConfig, stack: contextlib.ExitStack):
        self.proto, self.counted, self.bounds, self.base_dir, self.config, self.stack = proto, counted, bounds, base_dir, config, stack
        self.types = _elem_types(proto, counted + list(bounds))
        self.sizes = _sample_sizes(proto, counted + list(bounds))
        self.rebuilds = 0
        self._pending: list[str] | None = None
        self._build(list(bounds))

    def _build(self, reduced: list[str]) -> None:
        sess = self.stack.enter_context(_session(self.proto, self.counted, reduced, self.base_dir, self.config, self.types))
        self._current = (sess, self.counted + [r for t in reduced for r in _reductions(t)], reduced)

    def current(self) -> tuple[Any, list[str], list[str]]:
        if self._pending is not None:
            self.rebuilds += 1
            self._build(self._pending)
            self._pending = None
        return self._current

    def update(self, maxima: Mapping[str, float]) -> None:
        reduced = self._current[2]
        still = [t for t in reduced if self.bounds[t] is None or maxima[t] < self.bounds[t]]
        if len(still) < len(reduced) and self.rebuilds < self.MAX_REBUILDS and self._worth(set(reduced) - set(still), reduced):
            self._pending = still

    def _worth(self, dropped: set[str], reduced: list[str]) -> bool:
        if any(self.sizes.get(t) is None for t in dropped):
            return True  # what the rebuild saves is unknown: make it, as before sizes were weighed
        # a tensor of unknown size counts as none: the share errs towards rebuilding
        total = sum(self.sizes.get(t) or 0 for t in [*self.counted, *reduced])
        return sum(self.sizes[t] for t in dropped) >= self.REBUILD_SHARE * total


def _sample_sizes(m: onnx.ModelProto, names: Iterable[str]) -> dict[str, int | None]:
    """Values per sample of each tensor (its shape past the first dimension), None where the
    model's value_info does not fix it."""
    shapes = {vi.name: vi.type.tensor_type.shape for vi in [*m.graph.input, *m.graph.value_info, *m.graph.output]}
    out: dict[str, int | None] = {}
    for n in names:
        shape = shapes.get(n)
        dims = [d.dim_value if d.HasField("dim_value") else 0 for d in shape.dim[1:]] if shape is not None and len(shape.dim) else []
        out[n] = math.prod(dims) if shape is not None and len(shape.dim) and all(dims) else None
    return out


def _elem_types(m: onnx.ModelProto, needed: Iterable[str]) -> dict[str, int]:
    """Element types of graph tensors, from shape inference when the model does not already give
    every ``needed`` one."""
    types = {vi.name: vi.type.tensor_type.elem_type for vi in list(m.graph.value_info) + list(m.graph.input) + list(m.graph.output)}
    if all(types.get(t) for t in needed):
        return types
    try:
        inferred = infer_shapes(m)
        types.update({vi.name: vi.type.tensor_type.elem_type for vi in inferred.graph.value_info})
    except Exception:
        pass
    return {k: v for k, v in types.items() if v}


def _run(current: Callable[[], tuple[Any, list[str], list[str]]], feeds: Iterator[tuple[int, Feed]], overlap: bool) -> Iterator[tuple[int, list[str], list[np.ndarray]]]:
    """Per batch: its size, the tensors reduced in it and the outputs (those of ``current()``:
    session, output names, reduced tensors); with ``overlap`` the next batch runs while the
    caller histograms this one."""

    def run(feed: Feed) -> tuple[list[str], list[np.ndarray]]:
        # A fresh binding per batch: outputs land in new ONNX Runtime buffers that numpy views
        # without a copy (run() copies every output, a third of the pass for a CNN), and a
        # batch still being counted is never overwritten by the next one.
        sess, names, reduced = current()
        try:
            io = sess.io_binding()
            held = {k: np.ascontiguousarray(v) for k, v in feed.items()}  # binding does not own them
            for k, v in held.items():
                io.bind_cpu_input(k, v)
            computed = [n for n in names if n not in held]  # a graph input is taken from the feed
            for n in computed:
                io.bind_output(n, "cpu")
            got = {}
            if computed:  # none once every reduction is done and only graph inputs are counted
                sess.run_with_iobinding(io)
                got = dict(zip(computed, (v.numpy() for v in io.get_outputs())))
            return reduced, [got[n] if n in got else held[n] for n in names]
        except Exception as e:
            raise DataError(f"ONNX Runtime failed on calibration data: {str(e).strip().splitlines()[0]}") from e

    if not overlap:
        for n, feed in feeds:
            yield n, *run(feed)
        return
    q: queue.Queue = queue.Queue(maxsize=1)
    stop = threading.Event()

    def worker() -> None:
        try:
            for n, feed in feeds:
                if stop.is_set():
                    return
                q.put((n, *run(feed)))
            q.put(None)
        except BaseException as e:  # handed to the consumer, raised there
            q.put(e)

    th = threading.Thread(target=worker, name="calibration-runner", daemon=True)
    th.start()
    try:
        while True:
            item = q.get()
            if item is None:
                return
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        while th.is_alive():
            try:
                q.get_nowait()
            except queue.Empty:
                th.join(timeout=0.05)
