"""The distillation loop: progress bar, periodic atomic checkpoints, exact resume."""
from __future__ import annotations

import dataclasses
import math
import time
from typing import Any, Callable, Iterable

from .._optional import require
from ..errors import ConfigError, DataError
from ..progress import Progress
from .checkpoint import load_checkpoint, rng_state, save_checkpoint, set_rng_state
from .config import TRAJECTORY_FIELDS, FinetuneConfig
from .loss import distillation_loss
from .parallel import Replica

__all__ = ["finetune", "FinetuneResult", "evaluate"]


@dataclasses.dataclass
class FinetuneResult:
    student: Any
    steps: int
    report: dict[str, Any]


def _epoch_seed(seed: int, epoch: int) -> int:
    return (seed * 1_000_003 + epoch) % (2**63 - 1)


def _optimizer(params, config: FinetuneConfig):
    torch = require("torch", "fine-tuning")
    if config.optimizer == "sgd":
        return torch.optim.SGD(params, lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay)
    cls = torch.optim.AdamW if config.optimizer == "adamw" else torch.optim.Adam
    return cls(params, lr=config.lr, weight_decay=config.weight_decay)


def _length(data: Iterable) -> int | None:
    try:
        return len(data)  # type: ignore[arg-type]
    except TypeError:
        return None


def evaluate(model, data: Iterable) -> float:
    """Top-1 accuracy of ``model`` over ``(inputs, labels)`` batches (eval mode, no gradients)."""
    torch = require("torch", "evaluation")
    was = model.training
    model.eval()
    right = total = 0
    with torch.no_grad():
        for x, y in data:
            right += int((model(x).argmax(-1) == y).sum())
            total += len(y)
    model.train(was)
    return right / total if total else float("nan")


def finetune(student, teacher, data: Iterable, config: FinetuneConfig, eval_data: Iterable | None = None, log: Callable[[str], None] | None = None,
             replica: Replica | None = None, on_step: Callable[[int, float], None] | None = None) -> FinetuneResult:
    """Distil ``teacher`` into ``student`` (trained in place) over ``data`` batches of (inputs, labels).

    With ``config.checkpoint_dir`` a checkpoint (student, optimizer, schedule, RNG states and the
    position in the data) is written every ``checkpoint_every`` steps and at the end; with
    ``config.resume`` training continues from it and reaches the same weights as a run that was
    never interrupted. Each epoch seeds torch's global generator from ``config.seed`` and the epoch
    number, which fixes the data order of a shuffling loader and the dropout masks.

    ``replica``: this process is one worker of a data-parallel run (:mod:`.parallel`): it trains
    on its slice of every batch under DDP; rank 0 alone writes checkpoints and evaluates, and the
    checkpoint holds every worker's RNG state, so a resumed run equals an uninterrupted one with the
    same number of workers bit for bit. ``on_step(step, loss)``: called after every step (on rank
    0), for progress shown elsewhere.
    """
    torch = require("torch", "fine-tuning")
    if config.threads:
        torch.set_num_threads(config.threads)
    teacher.eval()
    for p in teacher.parameters():
        p.requires_grad_(False)
    per_epoch = _length(data)
    total = config.steps if config.steps is not None else (config.epochs * per_epoch if per_epoch else None)
    if config.schedule == "cosine" and total is None:
        raise ConfigError("finetune schedule 'cosine' needs a known number of steps: set steps, or give data with a length")

    world = replica.world if replica is not None else 1
    lead = replica is None or replica.rank == 0
    opt = _optimizer([p for p in student.parameters() if p.requires_grad], config)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, (lambda s: 0.5 * (1 + math.cos(math.pi * min(s, total) / total))) if config.schedule == "cosine" else (lambda s: 1.0))
    step = epoch = batch = 0
    history: list[list[float]] = []
    window: list[float] = []
    resumed_rng = None
    report: dict[str, Any] = {}

    if config.resume:
        ckpt = load_checkpoint(config.checkpoint_dir)
        if ckpt is not None:
            _check_same_trajectory(ckpt["config"], config)
            if ckpt.get("world", 1) != world:
                raise ConfigError(f"cannot resume: the checkpoint in {config.checkpoint_dir} was trained by {ckpt.get('world', 1)} worker(s), this run has {world}; "
                                  "resume with the same number of workers, or use another checkpoint_dir")
            student.load_state_dict(ckpt["student"])
            opt.load_state_dict(ckpt["optimizer"])
            sched.load_state_dict(ckpt["scheduler"])
            step, epoch, batch = ckpt["step"], ckpt["epoch"], ckpt["batch"]
            history, window, report = ckpt["history"], ckpt["window"], ckpt["report"]
            # at an epoch start the epoch seed decides; mid-epoch each worker continues its own draws
            resumed_rng = (ckpt.get("worker_rng") or [ckpt["rng"]])[replica.rank if replica is not None else 0] if batch > 0 else None
            if log:
                log(f"resumed from {config.checkpoint_dir} at step {step} (epoch {epoch}, batch {batch})")
        elif log:
            log(f"no checkpoint in {config.checkpoint_dir}: starting at step 0")
    # wrapped after a resume has loaded the checkpoint: DDP starts every worker from rank 0's weights
    model = replica.wrap(student) if replica is not None else student
    if eval_data is not None and lead and "student_accuracy_before" not in report:
        report["teacher_accuracy"] = evaluate(teacher, eval_data)
        report["student_accuracy_before"] = evaluate(student, eval_data)

    def state() -> dict[str, Any] | None:
        """The checkpoint (on rank 0; None elsewhere). Every rank must call it: it gathers the RNG states."""
        rng = rng_state()
        workers = replica.gather(rng) if replica is not None else None
        if not lead:
            return None
        extra = {"world": world, "worker_rng": workers} if replica is not None else {}
        return {
            "student": student.state_dict(),
            "optimizer": opt.state_dict(),
            "scheduler": sched.state_dict(),
            "step": step,
            "epoch": epoch,
            "batch": batch,
            "rng": rng,
            "history": history,
            "window": window,
            "report": report,
            "config": config.to_dict(),
            **extra,
        }

    t0, c0 = time.perf_counter(), time.process_time()
    bar = Progress("finetune", total, unit="step", initial=step, enabled=config.progress and lead)
    model.train()
    done = total is not None and step >= total
    while not done and (config.steps is not None or epoch < config.epochs):
        torch.manual_seed(_epoch_seed(config.seed, epoch))
        # a replica's batches come as (x, y, weight): its share of each batch (see .parallel)
        it = iter(replica.shard(data) if replica is not None else data)
        for _ in range(batch):  # fast-forward to where the checkpoint stopped
            next(it)
        if resumed_rng is not None:
            set_rng_state(resumed_rng)
            resumed_rng = None
        for item in it:
            x, y, weight = item if replica is not None else (*item, 1.0)
            with torch.no_grad():
                t_logits = teacher(x)
            loss = distillation_loss(model(x), t_logits, y, config.alpha, config.temperature)
            if weight != 1.0:  # this worker's share of the whole batch's mean (see .parallel)
                loss = loss * weight
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            step, batch = step + 1, batch + 1
            value = replica.total(loss) if replica is not None else loss.item()
            window.append(value)
            if len(window) == config.history_every:
                history.append([step, sum(window) / len(window)])
                window = []
            bar.update(1, loss=round(value, 4), epoch=epoch)
            if on_step is not None and lead:
                on_step(step, value)
            if config.checkpoint_dir and step % config.checkpoint_every == 0:
                _save(config.checkpoint_dir, state())
            if total is not None and step >= total:
                done = True
                break
        else:
            if batch == 0:
                raise DataError("finetune: the training data yielded no batches")
            epoch, batch = epoch + 1, 0
    bar.close()
    report["steps"] = step
    report["seconds"] = round(report.get("seconds", 0.0) + time.perf_counter() - t0, 2)
    # this process's CPU time in the loop (all its threads): on shared cores wall time overstates the work
    report["cpu_seconds"] = round(report.get("cpu_seconds", 0.0) + time.process_time() - c0, 2)
    report["final_loss"] = sum(window) / len(window) if window else (history[-1][1] if history else None)
    report["loss_history"] = list(history)
    if config.checkpoint_dir:
        _save(config.checkpoint_dir, state())
    if eval_data is not None and lead:
        report["student_accuracy_after"] = evaluate(student, eval_data)
    student.eval()
    return FinetuneResult(student, step, report)


def _save(directory: str, state: dict[str, Any] | None) -> None:
    if state is not None:  # rank 0's
        save_checkpoint(directory, state)


def _check_same_trajectory(saved: dict[str, Any], config: FinetuneConfig) -> None:
    now = config.to_dict()
    # the number of steps or epochs may grow on resume (extending a run), except under a cosine
    # schedule, whose learning rates depend on the total
    free = () if config.schedule == "cosine" else ("steps", "epochs")
    diff = [k for k in TRAJECTORY_FIELDS if k not in free and saved.get(k) != now.get(k)]
    if diff:
        detail = ", ".join(f"{k}: {saved.get(k)!r} -> {now.get(k)!r}" for k in diff)
        raise ConfigError(f"cannot resume: the checkpoint was trained with different settings ({detail}); use the same settings or another checkpoint_dir")

