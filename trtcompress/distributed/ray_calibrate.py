"""Calibration statistics collected by Ray tasks, one a shard, merged on the driver.

Each task opens its shard's reader where it runs (:mod:`.shards`), streams the samples through
ONNX Runtime with :func:`~trtcompress.quant.calibrate.collect_statistics` (the single-process
code, sessions from :mod:`trtcompress.sessions`) and returns its :class:`Statistics` and the
sensitivity samples it would keep. Statistics merge exactly (integer counts on a power-of-two
grid, maxima; see :mod:`trtcompress.quant.histogram`) and the kept samples are chosen by content
digest, so the table, the Q/DQ model and the cache equal a single-process run's byte for byte
(the table's timings aside). Calibration is one pass: the histogram grid follows the data's
maximum as it grows, so no range pass comes first.

A task is a pure function of its shard: Ray retries it when its worker dies (``max_retries``) and
the driver takes one result per shard, so no sample counts twice. A task's own error (bad data)
is not retried: it is the user's error, raised on the driver as it is.
"""
from __future__ import annotations

import dataclasses
import logging
import os
import resource
import time
from typing import Any, Iterable, Mapping, Sequence

import onnx

from .._optional import require
from ..config import Config
from ..data.base import ModelInput, SampleKeeper, model_inputs
from ..data.options import DataOptions
from ..errors import ConfigError, DataError, MissingDependencyError, ModelError, UserError
from ..progress import Progress
from ..quant.calibrate import CollectConfig, _fixed_batch, collect_statistics
from ..quant.stats import Statistics
from ..weightless import has_external_data
from . import LOCAL, check_ray
from .cluster import connect as _connect
from .shards import Shard, absolute_spec, count_samples, open_shard, plan_shards

__all__ = ["RayOptions", "ShardedData", "RayCollector"]

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class RayOptions(Config):
    """``address``: the cluster (``local``: ray.init()'s choice, the cluster RAY_ADDRESS names or
    a new one here; else ``auto``, ``HOST:6379`` or ``ray://HOST:10001``). ``tasks``: shards, one
    task each (0: one per CPU the cluster has). ``cpus_per_task``: CPUs a task asks for, and the
    ONNX Runtime threads it runs with. ``max_retries``: reruns of a task whose worker died."""

    address: str = LOCAL
    tasks: int = 0
    cpus_per_task: int = 1
    max_retries: int = 3

    def validate(self) -> None:
        if not self.address:
            raise ConfigError(f"give a Ray address (auto, HOST:6379, ray://HOST:10001) or {LOCAL}")
        if self.tasks < 0:
            raise ConfigError(f"ray tasks must be >= 0 (0: one per CPU of the cluster), got {self.tasks}")
        if self.cpus_per_task < 1:
            raise ConfigError(f"cpus_per_task must be >= 1, got {self.cpus_per_task}")
        if self.max_retries < 0:
            raise ConfigError(f"max_retries must be >= 0, got {self.max_retries}")


@dataclasses.dataclass
class ShardedData:
    """The calibration data as the tasks read it: ``spec`` with ``options`` (batch, limit,
    preprocessing, input shapes). ``keeper``: the driver's sample keeper, given every task's."""

    spec: str
    options: DataOptions
    keeper: SampleKeeper | None = None


def _collect_shard(model: bytes, tensors: list[str], shard: Shard, inputs: list[ModelInput], config: CollectConfig,
                   max_only: dict[str, float | None], keep: int) -> tuple[Statistics, SampleKeeper | None, dict[str, Any]]:
    """One task: the shard's statistics, the samples its keeper kept, and where and how it ran."""
    t0, c0 = time.perf_counter(), time.process_time()
    _reset_peak_rss()  # a worker process runs many tasks: its peak is this task's from here
    proto = onnx.load_from_string(model)
    source: Any = open_shard(shard, inputs)
    keeper = SampleKeeper(keep) if keep else None
    if keeper is not None:
        source = keeper.watch(source)
    stats = collect_statistics(proto, tensors, source, config, max_only)
    ray = require("ray")
    info = {"start": shard.start, "stop": shard.stop, "seconds": round(time.perf_counter() - t0, 3),
            "cpu_seconds": round(time.process_time() - c0, 3), "pid": os.getpid(),
            "node": ray.get_runtime_context().get_node_id(), "peak_rss_mb": peak_rss_mb()}
    return stats, keeper, info


def _reset_peak_rss() -> None:
    try:
        with open("/proc/self/clear_refs", "w") as f:  # Linux: "5" resets the peak (VmHWM)
            f.write("5")
    except OSError:
        pass  # elsewhere the peak is the process's since it started


def peak_rss_mb() -> float:
    """This process's peak resident memory (since the last reset, on Linux), in MB."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        pass
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


class RayCollector:
    """Called like :func:`collect_statistics` with a :class:`ShardedData` as the source; after a
    call, ``report`` says how the run went (shards, tasks' times and memory, merge time)."""

    def __init__(self, options: RayOptions | None = None):
        self.options = options or RayOptions()
        self.report: dict[str, Any] = {}

    def __call__(self, model: onnx.ModelProto | str | os.PathLike, tensors: Sequence[str], data: ShardedData,
                 config: CollectConfig | None = None, max_only: Mapping[str, float | None] | Iterable[str] = ()) -> Statistics:
        if not isinstance(data, ShardedData):
            raise TypeError(f"the Ray collector reads ShardedData (a data spec and its options), got {type(data).__name__}")
        check_ray()
        config = config or CollectConfig()
        proto = model if isinstance(model, onnx.ModelProto) else onnx.load_model(os.fspath(model), load_external_data=False)
        if has_external_data(proto) or proto.ByteSize() > (2 << 30) - 1:
            raise ModelError("calibration on Ray ships the model to its tasks in one piece, which holds models under 2 GB; calibrate this one without --ray")
        bounds = dict(max_only) if isinstance(max_only, Mapping) else dict.fromkeys(max_only)
        inputs = model_inputs(proto)
        spec = absolute_spec(data.spec)
        samples, reader_inputs = count_samples(spec, inputs, data.options)
        if data.keeper is not None and data.keeper.inputs is None:
            data.keeper.inputs = reader_inputs
        ray = require("ray", "calibration on Ray (--ray)")
        started = _connect(ray, self.options.address)
        try:
            return self._run(ray, proto, list(dict.fromkeys(tensors)), spec, samples, inputs, data, config, bounds)
        finally:
            if started:
                ray.shutdown()

    def _run(self, ray, proto, tensors, spec, samples, inputs, data, config, bounds) -> Statistics:
        o = self.options
        cpus = int(ray.cluster_resources().get("CPU", 1))
        tasks = o.tasks or max(1, cpus // o.cpus_per_task)
        shards = plan_shards(spec, data.options, samples, tasks, _fixed_batch(inputs) or 1)
        # a task runs on the CPUs it asked for: ONNX Runtime's threads and the counting threads
        task_config = dataclasses.replace(config, threads=config.threads or o.cpus_per_task, workers=max(1, min(config.workers, o.cpus_per_task)), progress=False)
        remote = ray.remote(_collect_shard).options(num_cpus=o.cpus_per_task, max_retries=o.max_retries, retry_exceptions=False)
        t0 = time.perf_counter()
        model_ref = ray.put(proto.SerializeToString())
        keep = data.keeper.k if data.keeper is not None else 0
        pending = {remote.remote(model_ref, tensors, s, inputs, task_config, bounds, keep): s for s in shards}
        bar = Progress(f"calibrating on Ray ({len(shards)} shards)", samples, unit="sample", enabled=config.progress)
        merged: Statistics | None = None
        runs, kernels, merge_s = [], set(), 0.0
        try:
            while pending:
                done, _ = ray.wait(list(pending), num_returns=1)
                shard = pending.pop(done[0])
                stats, keeper, info = _result(ray, done[0], f"calibration samples {shard.start}:{shard.stop}")
                m0 = time.perf_counter()
                merged = stats if merged is None else merged.merge(stats)  # exact: any order gives the same counts
                if keeper is not None:
                    data.keeper.merge(keeper)
                merge_s += time.perf_counter() - m0
                kernels.add(stats.kernel)
                runs.append(info)
                bar.update(shard.samples)
        finally:
            bar.close()
            for ref in pending:
                ray.cancel(ref)
        if merged is None:  # count_samples refuses empty data: never here
            raise DataError("the calibration data is empty; give at least one sample")
        merged.kernel = ",".join(sorted(kernels))
        if merged.num_samples != samples:
            raise DataError(f"the calibration data changed while it was read: {samples} samples were counted, the shards read {merged.num_samples}")
        self.report = {"address": self.options.address, "cluster_cpus": cpus, "nodes": len({r["node"] for r in runs}), "shards": len(shards),
                       "samples": samples, "seconds": round(time.perf_counter() - t0, 3), "merge_seconds": round(merge_s, 3),
                       "tasks": sorted(runs, key=lambda r: r["start"])}
        return merged


def _result(ray, ref, what: str):
    """The task's result; ``what`` it computed names it in the errors."""
    try:
        return ray.get(ref)
    except ray.exceptions.RayTaskError as e:
        cause = getattr(e, "cause", None)
        if isinstance(cause, UserError):
            raise cause from None  # the user's one-line error, as a single-process run gives it
        if isinstance(cause, ImportError):
            raise MissingDependencyError(f"a Ray node cannot import what {what.split()[0]} needs ({cause}); install trtcompress[ray] on every node of the cluster") from e
        raise
    except ray.exceptions.RayError as e:
        raise DataError(f"the Ray task for {what} failed ({type(e).__name__}) after its retries; "
                        "check the cluster's nodes and memory") from e
