"""The QAT run: the calibrated graph with fake quantization distilled from the FP32 graph, then
the trained weights and scales written back into the ONNX model and the calibration table.

Training uses the distillation loop of ``trtcompress finetune`` (:func:`...finetune.trainer.finetune`:
``alpha*CE + (1-alpha)*T^2*KL``, Adam, cosine schedule, atomic checkpoints and exact resume). The
checkpoints of one run go to ``checkpoint/<key>``, the key a digest of the model, the plan, the
calibration table, the training data and the trajectory settings: a resumed run finds its own
checkpoint and never another model's.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import time
from pathlib import Path
from typing import Any, Iterable, Mapping

import numpy as np
import onnx

from ..._optional import require
from ...errors import ConfigError, ModelError
from ..placement import QuantPlan
from ..table import CalibrationTable

__all__ = ["QatOptions", "QatResult", "quantization_aware", "write_back"]


@dataclasses.dataclass(frozen=True)
class QatOptions:
    """``steps`` Adam steps at ``lr`` (cosine schedule) on batches of ``batch``; ``alpha``: weight
    of the label loss (None: 0.5 with labels, 0 without); ``learn_scales``: activation scales
    learned (LSQ) or kept as calibrated; ``checkpoint``: directory for checkpoints, from which an
    interrupted run resumes (None: none written)."""

    steps: int = 200
    lr: float = 1e-5
    batch: int = 16
    alpha: float | None = None
    temperature: float = 2.0
    learn_scales: bool = True
    seed: int = 0
    checkpoint: str | None = None
    threads: int = 0
    progress: bool = True
    history_every: int = 10

    def __post_init__(self) -> None:
        if self.steps < 1 or self.batch < 1:
            raise ConfigError(f"qat steps and batch must be at least 1, got {self.steps} and {self.batch}")
        if not self.lr > 0:
            raise ConfigError(f"qat lr must be > 0, got {self.lr}")
        if self.alpha is not None and not 0.0 <= self.alpha <= 1.0:
            raise ConfigError(f"qat alpha must be in [0, 1], got {self.alpha}")


@dataclasses.dataclass
class QatResult:
    model: onnx.ModelProto  # the float model with the trained weights
    table: CalibrationTable  # the calibrated ranges with the learned ones
    student: Any  # the trained FakeQuant module
    report: dict[str, Any]


def _checkpoint_key(model: onnx.ModelProto, plan: QuantPlan, table: CalibrationTable, data_digest: str, options: QatOptions, alpha: float,
                    weight_steps: Mapping[str, float] | None) -> str:
    h = hashlib.sha256(model.SerializeToString())
    h.update(json.dumps(plan.to_dict(), sort_keys=True, default=str).encode())
    h.update(json.dumps(table.amax, sort_keys=True).encode())
    h.update(json.dumps(table.details.get("centered", {}) if isinstance(table.details, dict) else {}, sort_keys=True).encode())
    h.update(data_digest.encode())
    settings = {k: v for k, v in dataclasses.asdict(options).items() if k not in ("checkpoint", "threads", "progress")}
    h.update(json.dumps({**settings, "alpha": alpha, "grid": None if weight_steps is None else dict(weight_steps)}, sort_keys=True).encode())
    return h.hexdigest()[:16]


def quantization_aware(model: onnx.ModelProto, plan: QuantPlan, table: CalibrationTable, reference: onnx.ModelProto,
                       data: Iterable, labelled: bool, data_digest: str, options: QatOptions,
                       weight_steps: Mapping[str, float] | None = None) -> QatResult:
    """Train ``model`` (float, node names as in ``plan``) with the TensorRT form's fake quantization
    of ``plan``/``table`` to match ``reference`` (the FP32 model) on ``data`` (``(inputs, labels or
    None)`` batches); the model and table with what was learned. ``weight_steps`` (node -> step):
    the CPU form's weight grids (quant.ptq.weight_grids) instead of the TensorRT form's."""
    torch = require("torch", "quantization-aware training")
    from ...finetune.checkpoint import load_checkpoint
    from ...finetune.config import FinetuneConfig
    from ...finetune.trainer import finetune as train
    from .fake_quant import FakeQuant
    from .replay import GraphReplay

    alpha = options.alpha if options.alpha is not None else (0.5 if labelled else 0.0)
    if alpha and not labelled:
        raise ConfigError(f"qat alpha={alpha} weighs a label loss, but the training data has no labels; set alpha 0 (label-free) or train on labelled data")
    if len(model.graph.output) != 1:
        raise ModelError(f"quantization-aware training distils a classifier with one [batch, classes] output; this model has {len(model.graph.output)} outputs")
    torch.manual_seed(options.seed)
    student = FakeQuant(GraphReplay(model), model, plan, table, options.learn_scales, weight_steps)
    teacher = GraphReplay(reference, trainable=())
    before = {n: a.copy() for n, a in student.replay.trained().items()}
    checkpoint = None
    resumed_at = None
    if options.checkpoint:
        checkpoint = str(Path(options.checkpoint) / _checkpoint_key(model, plan, table, data_digest, options, alpha, weight_steps))
        found = load_checkpoint(checkpoint)
        resumed_at = found["step"] if found is not None else None
    config = FinetuneConfig(alpha=alpha, temperature=options.temperature, steps=options.steps, lr=options.lr, optimizer="adam",
                            schedule="cosine", batch_size=options.batch, seed=options.seed, checkpoint_dir=checkpoint,
                            checkpoint_every=max(1, options.steps // 10), resume=checkpoint is not None, progress=options.progress,
                            threads=options.threads, history_every=max(1, min(options.history_every, options.steps // 10)))
    t0 = time.perf_counter()
    result = train(student, teacher, data, config)
    seconds = time.perf_counter() - t0
    student.eval()
    trained = student.replay.trained()
    amax = student.amax() if options.learn_scales else {}
    new_table = CalibrationTable(amax={**table.amax, **amax}, method=table.method, num_samples=table.num_samples, details=table.details)
    change = sorted(abs(float(student.scale(t).detach()) / s - 1.0) for t, s in student.initial.items())
    curve = [list(p) for p in result.report["loss_history"]]
    if result.report["final_loss"] is not None and (not curve or curve[-1][0] < result.steps):
        curve.append([result.steps, result.report["final_loss"]])
    report = {
        "steps": result.steps, "seconds": round(seconds, 2), "alpha": alpha, "lr": options.lr, "batch": options.batch,
        "loss_curve": curve, "final_loss": result.report["final_loss"],
        "learn_scales": options.learn_scales, "weights_trained": len(trained),
        "weights_changed": sum(1 for n, a in trained.items() if not np.array_equal(a, before[n])),
        "activation_scales": len(student.initial),
        "scale_change_median": change[len(change) // 2] if change else 0.0, "scale_change_max": change[-1] if change else 0.0,
        "checkpoint": checkpoint, "resumed_at_step": resumed_at,
    }
    return QatResult(write_back(model, trained), new_table, student, report)


def write_back(model: onnx.ModelProto, trained: dict[str, np.ndarray]) -> onnx.ModelProto:
    """A copy of ``model`` whose initializers named in ``trained`` hold the trained values."""
    from onnx import numpy_helper

    out = onnx.ModelProto()
    out.CopyFrom(model)
    for init in out.graph.initializer:
        if init.name in trained:
            init.CopyFrom(numpy_helper.from_array(trained[init.name].reshape(tuple(init.dims)), init.name))
    return out
