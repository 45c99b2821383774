"""Where a sweep's variants run: one interface, a registry of executors.

Every executor runs :func:`run_variant` once per :class:`VariantTask` and hands each outcome to
``done`` as it finishes, in any order. ``local`` runs them in a pool of processes on this machine
(a process each, so a variant that crashes its process fails alone; spawned, not forked, so no
ONNX Runtime thread pool is copied mid-flight); ``ray`` runs each as a Ray task with its resource
request (CPUs, and a GPU for a variant that builds a TensorRT engine or runs on the GPU), on the
cluster ``--ray`` names (trtcompress.distributed). A variant is a whole ``compress`` run, written
atomically into its run directory, so a task Ray retries after its worker died starts over cleanly.
"""
from __future__ import annotations

import concurrent.futures as cf
import contextlib
import dataclasses
import multiprocessing
import os
import socket
import sys
import threading
import time
from pathlib import Path
from typing import Any, Callable, Protocol, Sequence

from ..errors import ConfigError, UserError

__all__ = ["VariantTask", "Executor", "EXECUTORS", "make_executor", "run_variant", "needs_gpu"]

Done = Callable[[dict[str, Any]], None]


@dataclasses.dataclass(frozen=True)
class VariantTask:
    """One variant to run: its compress config (as a mapping: it crosses processes and nodes), where
    its log goes, the working directory its relative paths are read from, and its resource request."""

    name: str
    config: dict[str, Any]
    log_path: str
    cwd: str
    cpus: int = 1
    gpus: int = 0
    command: tuple[str, ...] | None = None


def needs_gpu(config: Any) -> bool:
    """Whether a variant (a CompressConfig) builds a TensorRT engine (``target_trt``) or runs on a GPU."""
    gpu_providers = {"cuda", "tensorrt", "trt"}
    return bool(config.target_trt) or config.backend == "trt" or bool(gpu_providers & {p.lower() for p in config.runner.providers})


def run_variant(task: VariantTask) -> dict[str, Any]:
    """Run one variant's ``compress`` (its log and progress lines into ``task.log_path``); the
    outcome: ``status`` completed or failed, its report (also on a failure that kept one), where
    and how long it ran. A user error or a failed stage is an outcome, not an exception: the sweep goes on."""
    from .. import progress
    from ..job import CompressConfig, compress

    if os.path.isdir(task.cwd):  # a Ray worker starts elsewhere; the sweep's paths are the driver's
        os.chdir(task.cwd)
    t0 = time.perf_counter()
    where: dict[str, Any] = {"pid": os.getpid(), "host": socket.gethostname()}
    ray = sys.modules.get("ray")
    if ray is not None and ray.is_initialized():  # a Ray task: which node of the cluster ran it
        where["node"] = ray.get_runtime_context().get_node_id()
    log = Path(task.log_path)
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "w") as f, contextlib.redirect_stdout(f), contextlib.redirect_stderr(f), progress.configured(enabled=True, stream=f):
        try:
            result = compress(CompressConfig.from_dict(task.config), log=lambda m: print(m, file=f, flush=True), command=task.command)
        except Exception as e:  # the variant's failure; its run directory keeps what finished (job._kept_on_failure)
            print(f"{type(e).__name__}: {e}", file=f)
            kept = Path(task.config["runs_dir"]) / task.name / "report.json"
            report = _read_json(kept) if kept.is_file() else None
            return {"name": task.name, "status": "failed", "seconds": round(time.perf_counter() - t0, 2), **where,
                    "error": {"type": type(e).__name__, "message": str(e), "user_error": isinstance(e, UserError)}, "report": report}
    return {"name": task.name, "status": "completed", "seconds": round(time.perf_counter() - t0, 2), **where, "report": result.report}


def _read_json(path: Path) -> Any:
    import json

    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _died(task: VariantTask, why: str) -> dict[str, Any]:
    return {"name": task.name, "status": "failed", "seconds": None, "error": {"type": "WorkerDied", "message": why, "user_error": False}, "report": None}


class Executor(Protocol):
    """Runs every task, calling ``done(outcome)`` as each finishes; an interrupt stops the rest."""

    def run(self, tasks: Sequence[VariantTask], done: Done) -> None: ...

    def describe(self) -> dict[str, Any]: ...


@dataclasses.dataclass
class LocalExecutor:
    """``jobs`` processes on this machine."""

    jobs: int

    def describe(self) -> dict[str, Any]:
        return {"kind": "local", "jobs": self.jobs, "cpus": os.cpu_count()}

    def run(self, tasks: Sequence[VariantTask], done: Done) -> None:
        if not tasks:
            return
        pool = cf.ProcessPoolExecutor(max_workers=self.jobs, mp_context=multiprocessing.get_context("spawn"),
                                      initializer=_exit_with_parent, initargs=(os.getpid(),))
        try:
            futures = {pool.submit(run_variant, t): t for t in tasks}
            for future in cf.as_completed(futures):
                task = futures[future]
                try:
                    done(future.result())
                except cf.process.BrokenProcessPool as e:
                    done(_died(task, f"the process running it died ({e}); run the sweep again with --resume"))
                except Exception as e:  # what the process sent back could not be read: the variant's failure, not the sweep's
                    done(_died(task, f"its process failed ({type(e).__name__}: {e})"))
        except BaseException:
            _stop(pool)
            raise
        pool.shutdown(wait=True)


def _exit_with_parent(parent: int) -> None:
    """In a pool process: exit when the sweep that started it is gone (killed, not interrupted), so
    no variant runs on for a sweep nobody collects (its unfinished run directory is a dot folder)."""
    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(1.0)
        os._exit(1)

    threading.Thread(target=watch, name="trtcompress-sweep-parent", daemon=True).start()


def _stop(pool: cf.ProcessPoolExecutor) -> None:
    """Cancel what has not started and end the variants running now (their run directories are
    discarded: each is written under a temporary name until it completes)."""
    terminate = getattr(pool, "terminate_workers", None)  # Python 3.14
    if terminate is not None:
        terminate()
        return
    workers = list((getattr(pool, "_processes", None) or {}).values())  # before shutdown forgets them
    pool.shutdown(wait=False, cancel_futures=True)
    for p in workers:
        with contextlib.suppress(Exception):
            p.terminate()
    for p in workers:
        with contextlib.suppress(Exception):
            p.join(timeout=10)


@dataclasses.dataclass
class RayExecutor:
    """Each variant a Ray task on the cluster at ``address`` (``local``: ray.init()'s choice);
    ``max_retries``: reruns of a task whose worker died."""

    address: str
    max_retries: int = 2

    def describe(self) -> dict[str, Any]:
        return {"kind": "ray", "address": self.address}

    def run(self, tasks: Sequence[VariantTask], done: Done) -> None:
        if not tasks:
            return
        from .._optional import require
        from ..distributed import check_ray
        from ..distributed.cluster import connect

        check_ray("sweeps on Ray (--ray)")
        ray = require("ray", "sweeps on Ray (--ray)")
        started = connect(ray, self.address)
        pending: dict[Any, VariantTask] = {}
        try:
            gpus = ray.cluster_resources().get("GPU", 0)
            wanting = [t.name for t in tasks if t.gpus > gpus]
            if wanting:
                raise ConfigError(f"variant {wanting[0]} builds a TensorRT engine or runs on a GPU and asks Ray for one GPU; the cluster at "
                                  f"{self.address!r} has {gpus:g}: add a GPU node, or drop target_trt / the GPU backend from the grid")
            remote = ray.remote(run_variant)
            for t in tasks:
                ref = remote.options(num_cpus=t.cpus, num_gpus=t.gpus, max_retries=self.max_retries, retry_exceptions=False,
                                     name=f"trtcompress-sweep:{t.name}").remote(t)
                pending[ref] = t
            while pending:
                ready, _ = ray.wait(list(pending), num_returns=1)
                task = pending.pop(ready[0])
                try:
                    outcome = ray.get(ready[0])
                except ray.exceptions.RayError as e:
                    outcome = _died(task, f"its Ray task failed ({type(e).__name__}) after {self.max_retries} retries; check the cluster's nodes and memory")
                outcome.setdefault("ray", {"cpus": task.cpus, "gpus": task.gpus})
                done(outcome)
        finally:
            for ref in pending:
                with contextlib.suppress(Exception):
                    ray.cancel(ref, force=True)
            if started:
                ray.shutdown()


# executors by name: adding one is a class and one entry here; built from (Ray address, local
# jobs, number of variants)
EXECUTORS: dict[str, Callable[[str | None, int, int], Executor]] = {
    "local": lambda address, jobs, n: LocalExecutor(jobs or max(1, min(os.cpu_count() or 1, n))),
    "ray": lambda address, jobs, n: RayExecutor(address or "local"),
}


def make_executor(ray: str | None, jobs: int, variants: int) -> Executor:
    """``ray`` when a Ray address is given (checking the extra is installed first), else ``local``
    with ``jobs`` processes (0: one per CPU, at most one per variant)."""
    if ray is not None:
        from ..distributed import check_ray

        check_ray("sweeps on Ray (--ray)")
    return EXECUTORS["ray" if ray is not None else "local"](ray, jobs, variants)
