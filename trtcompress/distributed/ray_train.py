"""Distillation on Ray Train: torch DDP (gloo on CPU) with N workers, the single-process trainer in each.

The driver builds the student as a local run would and sends its weights; each worker rebuilds
the same modules from a :class:`TrainJob` (plain values: model and data specs, arrays), loads those
weights and runs :func:`trtcompress.finetune.trainer.finetune` as one :class:`Replica`: the same
loss, the same checkpoint files (rank 0 writes them, with every worker's RNG state) and the same
resume. Every worker reads the whole data in the seeded order and trains on its slice of each
batch (:mod:`trtcompress.finetune.parallel`), so the samples of step k are the single-process
run's batch k.

What "the same" means, tested in tests/distributed/test_ray_train.py:
* one worker under Ray gives the single-process run's weights bit for bit (with the same torch
  threads);
* a run resumed from its checkpoint gives an uninterrupted run's weights bit for bit, for the
  same number of workers (a checkpoint names its worker count; another count is refused);
* N > 1 workers train on the same batches with the gradient of the same whole-batch mean loss.
  For a network whose forward pass treats samples independently (no BatchNorm in training mode,
  no dropout) that is the single-process computation summed in another order: equal up to float
  rounding (tests/finetune/test_parallel.py: within 1e-5 after 16 steps), not bit for bit.
  BatchNorm in training mode normalises each worker's slice by the slice's own statistics (DDP
  without SyncBatchNorm; the running statistics kept are rank 0's), and each worker draws its own
  dropout masks: such a network computes something else with N > 1 (the Fashion CNN, which has
  both, differs from its single-process weights by up to 0.07 after 12 steps). The ``finetune``
  stage holds BatchNorm in eval mode by default (``hold_norm``); dropout stays each worker's.

The trained weights come back through a small actor, so the cluster needs no shared storage for
them; ``checkpoint_dir`` must be on storage every node sees (rank 0 writes, all ranks read on
resume). Ray Train is the ``ray`` extra (``ray[train]``), imported only here.
"""
from __future__ import annotations

import dataclasses
import os
import shutil
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any, Callable, Protocol

from .._optional import require
from ..config import Config
from ..errors import ConfigError, MissingDependencyError, UserError
from ..finetune.jobs import TrainParts
from . import LOCAL, check_ray_train

__all__ = ["RayTrainOptions", "TrainJob", "TrainParts", "ray_finetune"]


@dataclasses.dataclass(frozen=True)
class RayTrainOptions(Config):
    """``address``: the cluster (as for calibration: ``local``, ``auto``, ``HOST:6379``,
    ``ray://HOST:10001``). ``workers``: DDP workers. ``cpus_per_worker``: CPUs a worker asks for,
    and its torch threads unless the fine-tune sets ``threads``. ``max_failures``: restarts of the
    worker group after a worker dies; with ``checkpoint_dir`` a restart resumes from the last
    checkpoint (bit-identically), else it starts over."""

    address: str = LOCAL
    workers: int = 2
    cpus_per_worker: int = 1
    max_failures: int = 0

    def validate(self) -> None:
        if not self.address:
            raise ConfigError(f"give a Ray address (auto, HOST:6379, ray://HOST:10001) or {LOCAL}")
        if self.workers < 1:
            raise ConfigError(f"the number of Ray Train workers must be at least 1, got {self.workers}")
        if self.cpus_per_worker < 1:
            raise ConfigError(f"cpus_per_worker must be at least 1, got {self.cpus_per_worker}")
        if self.max_failures < 0:
            raise ConfigError(f"max_failures must be >= 0, got {self.max_failures}")


class TrainJob(Protocol):
    """Sent to every worker (pickled): builds that worker's :class:`TrainParts` where it runs."""

    def build(self) -> TrainParts: ...


def require_ray_train():
    """``ray.train.torch``, or a one-line error naming the extra (Ray alone lacks Ray Train's deps)."""
    check_ray_train()
    try:
        import ray.train.torch as rtt
    except ImportError as e:
        raise MissingDependencyError(f"Ray Train is needed for fine-tuning with --ray but cannot be imported ({str(e).splitlines()[0]}); run: pip install 'trtcompress[ray]'") from e
    return rtt


def _mailbox_class(ray):
    @ray.remote(num_cpus=0)
    class Mailbox:
        """Holds rank 0's result for the driver, and counts the worker group's attempts."""

        def __init__(self):
            self.result, self.starts, self.step, self.loss = None, {}, 0, None

        def progress(self, step: int, loss: float) -> None:
            self.step, self.loss = step, loss

        def position(self) -> tuple[int, float | None]:
            return self.step, self.loss

        def attempt(self, rank: int) -> int:
            """How many times ``rank`` started before (Ray Train restarts the whole group)."""
            self.starts[rank] = self.starts.get(rank, 0) + 1
            return self.starts[rank] - 1

        def put(self, result) -> None:
            self.result = result

        def take(self):
            return self.result

    return Mailbox


def _worker(cfg: dict[str, Any]) -> None:
    """One DDP worker (Ray Train runs it in every worker; torch.distributed is initialised)."""
    import ray
    import torch

    from ..finetune.parallel import Replica
    from ..finetune.trainer import finetune

    config = cfg["config"]
    torch.set_num_threads(config.threads or cfg["cpus_per_worker"])
    parts: TrainParts = cfg["job"].build()
    parts.student.load_state_dict(ray.get(cfg["state"]))
    replica = Replica.current()
    if ray.get(cfg["mailbox"].attempt.remote(replica.rank)) and config.checkpoint_dir:  # a restarted worker group: continue from this run's last checkpoint
        config = config.replace(resume=True)
    mailbox, sent = cfg["mailbox"], [0.0]

    def on_step(step: int, loss: float) -> None:  # rank 0's position for the driver's progress, at most once a second
        if time.monotonic() - sent[0] >= 1.0:
            mailbox.progress.remote(step, loss)
            sent[0] = time.monotonic()

    result = finetune(parts.student, parts.teacher, parts.data, config, eval_data=parts.eval_data, replica=replica, on_step=on_step)
    if replica.rank == 0:
        ray.get(cfg["mailbox"].put.remote({"student": result.student.state_dict(), "steps": result.steps, "report": result.report}))


def ray_finetune(job: TrainJob, student, config, options: RayTrainOptions, log: Callable[[str], None] | None = None):
    """Train ``student`` (the driver's, loaded with the result) with ``options.workers`` DDP
    workers on the Ray cluster; returns the trainer's :class:`FinetuneResult` with ``report["ray"]``."""
    from ..finetune.trainer import FinetuneResult
    from .ray_calibrate import _connect

    rtt = require_ray_train()
    ray = require("ray", "fine-tuning on Ray (--ray)")
    from ray.train import FailureConfig, RunConfig, ScalingConfig

    if config.checkpoint_dir:  # the workers' working directory is not the driver's
        config = config.replace(checkpoint_dir=str(Path(config.checkpoint_dir).resolve()))
    started = _connect(ray, options.address)
    storage = tempfile.mkdtemp(prefix="trtcompress-raytrain-")
    t0 = time.perf_counter()
    try:
        cpus = int(ray.cluster_resources().get("CPU", 0))
        # a cluster on this machine cannot grow: Ray Train would wait for the CPUs for ever
        # (an autoscaling cluster adds nodes for the request)
        if options.address == LOCAL and not os.environ.get("RAY_ADDRESS") and options.workers * options.cpus_per_worker > cpus:
            raise ConfigError(f"{options.workers} Ray Train workers of {options.cpus_per_worker} CPU(s) need {options.workers * options.cpus_per_worker} CPUs; "
                              f"the cluster on this machine has {cpus}: give fewer workers, or a cluster's address")
        mailbox = _mailbox_class(ray).remote()
        cfg = {"job": job, "state": ray.put(student.state_dict()), "config": config.replace(progress=False),
               "cpus_per_worker": options.cpus_per_worker, "mailbox": mailbox}
        trainer = rtt.TorchTrainer(
            _worker, train_loop_config=cfg, torch_config=rtt.TorchConfig(backend="gloo"),
            scaling_config=ScalingConfig(num_workers=options.workers, use_gpu=False, resources_per_worker={"CPU": options.cpus_per_worker}),
            run_config=RunConfig(name=f"trtcompress-finetune-{uuid.uuid4().hex[:8]}", storage_path=storage,
                                 failure_config=FailureConfig(max_failures=options.max_failures)))
        if log:
            log(f"fine-tuning with {options.workers} Ray Train worker(s) on {options.address}")
        _fit_showing_progress(ray, trainer, mailbox, config)
        out = ray.get(mailbox.take.remote())
    finally:
        shutil.rmtree(storage, ignore_errors=True)
        if started:
            ray.shutdown()
    if out is None:
        raise RuntimeError("Ray Train finished without rank 0's result")
    student.load_state_dict(out["student"])
    student.eval()
    report = dict(out["report"])
    report["ray"] = {"address": options.address, "workers": options.workers, "cpus_per_worker": options.cpus_per_worker,
                     "seconds": round(time.perf_counter() - t0, 2)}
    return FinetuneResult(student, out["steps"], report)


def _fit_showing_progress(ray, trainer, mailbox, config) -> None:
    """``trainer.fit()`` in a thread while this one shows rank 0's steps (the workers' own output
    stays on their nodes)."""
    from ..progress import Progress

    failed: list[BaseException] = []

    def fit() -> None:
        try:
            _fit(trainer)
        except BaseException as e:  # raised again below, in the caller's thread
            failed.append(e)

    thread = threading.Thread(target=fit, name="trtcompress-raytrain-fit", daemon=True)
    thread.start()
    bar, seen = None, 0
    try:
        while thread.is_alive():
            thread.join(1.0)
            step, loss = ray.get(mailbox.position.remote())
            if step > seen:
                if bar is None:  # timed from the first step seen: the workers' start is not a step's time
                    bar = Progress("finetune on Ray", config.steps, unit="step", initial=step, enabled=config.progress)
                else:
                    bar.update(step - seen, loss=round(loss, 4))
                seen = step
        if failed:
            raise failed[0]
        done = ray.get(mailbox.take.remote())
        if bar is not None and done is not None and done["steps"] > seen:
            bar.update(done["steps"] - seen)
    finally:
        if bar is not None:
            bar.close()


def _fit(trainer) -> None:
    """``trainer.fit()``; a worker's user error (bad data, bad settings) is raised as it is."""
    from ray.train import TrainingFailedError

    try:
        trainer.fit()
    except TrainingFailedError as e:
        for failure in (getattr(e, "worker_failures", None) or {}).values():
            cause = failure
            while cause is not None and not isinstance(cause, UserError):
                cause = getattr(cause, "cause", None) or cause.__cause__
            if isinstance(cause, UserError):
                raise cause from None
        raise
