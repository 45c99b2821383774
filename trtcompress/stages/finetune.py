"""Stage ``finetune``: recover the accuracy the earlier stages cost by distilling the torch model.

The structure the ONNX stages decided is read from the incoming ONNX model (2:4 masks from the
zeros of its weights, low-rank ranks from its factor pairs; see :mod:`trtcompress.finetune.structure`)
and applied to a copy of the torch model (``torch_model``: the job fills it with its model
reference). The copy is distilled from the dense torch model with the trainer of ``trtcompress
finetune`` (loss ``alpha*CE + (1-alpha)*T^2*KL``), exported, normalised, and later stages continue
on it. Training data (``train``: the job's calibration data by default) read by the job's data
reader has no labels: distillation runs label-free (alpha 0) on random resized crops and flips of
it. A built-in labelled dataset (``fashion-mnist:train:5000``) trains with labels too.

After ``share`` (``compress --stages [sparsify,]share,finetune``), the shared layers train their
centroids only (Deep Compression's third step, :mod:`trtcompress.finetune.centroids`): indices read
from the ONNX model stay fixed, each centroid's gradient is the sum of its weights' gradients, the
zero centroid of pruned weights and the INT8 grid's ±127 levels never move, and INT8-grid levels are
rounded back onto integers at the end. The export is written back in the shared form with the same
indices (:mod:`trtcompress.share.reshare`), so ``pack`` ships the trained model and a later
``quantize`` finds exactly the trained levels. ``centroids_only`` freezes everything else (biases,
norms, unshared layers), as in the paper; by default those train too.

``checkpoint_dir`` keeps the trainer's checkpoints (every ``checkpoint_every`` steps);
``resume`` continues an interrupted run from them to the same result (``trtcompress finetune``'s
mechanism).

``ray`` (the job's ``--ray``) trains with ``ray_workers`` DDP workers on Ray Train
(:mod:`trtcompress.distributed.ray_train`): one worker gives the local stage's model bit for bit
(with the same ``threads``); more train on slices of the same batches.

``eval`` (held-out data, disjoint from ``train``) gives top-1 agreement with the dense model, and
accuracy where it has labels, before and after training. The report carries ``loss_curve``
(``[step, mean loss]`` every ``history_every`` steps, the last point over the remaining steps).
"""
from __future__ import annotations

import dataclasses
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import onnx

from ..config import Config
from ..contracts import After
from ..errors import ConfigError, DataError, ModelError
from ..stage import StageResult, register_stage

__all__ = ["FinetuneStageConfig", "finetune", "needs_torch_model"]

OPTIMIZERS = ("adam", "adamw", "sgd")
SCHEDULES = ("constant", "cosine")


@dataclasses.dataclass(frozen=True)
class FinetuneStageConfig(Config):
    """Options of the ``finetune`` stage.

    ``torch_model``: the torch model the ONNX model was exported from (``compress`` fills it).
    ``train``: training data specs (default: the job's ``--calib``); ``eval``: held-out data for
    the before/after figures. ``limit``: samples read per training spec. ``alpha``: weight of the
    label loss (None: 0.5 with labels, 0 without). ``augment``: random resized crops (area at least
    ``crop_scale``) and flips of image inputs. ``norm_samples``: training inputs the BatchNorm
    statistics are re-estimated on before training (0: keep the teacher's); ``hold_norm``: they
    then stay fixed while training. ``ray``: train on Ray Train at this cluster address (``local``:
    ray.init()'s choice; compress fills it from ``--ray``) with ``ray_workers`` workers.
    ``centroids_only``: after ``share``, train the shared layers'
    centroids alone. ``checkpoint_dir``/``checkpoint_every``/``resume``: checkpoints and resuming an
    interrupted run, as ``trtcompress finetune`` does.
    """

    torch_model: str = ""
    train: tuple[str, ...] = ()
    eval: str | None = None
    preprocess: str | None = None
    inputs: tuple[str, ...] = ()
    exporter: str = ""  # torch exporter of the result ("": the job's, else auto)
    limit: int | None = None
    eval_limit: int | None = None
    steps: int = 300
    batch_size: int = 32
    lr: float = 1e-4
    optimizer: str = "adam"
    weight_decay: float = 0.0
    schedule: str = "cosine"
    alpha: float | None = None
    temperature: float = 2.0
    augment: bool = True
    crop_scale: float = 0.35
    hold_norm: bool = True
    norm_samples: int = 256
    seed: int = 0
    centroids_only: bool = False
    checkpoint_dir: str | None = None
    checkpoint_every: int = 50
    resume: bool = False
    history_every: int = 10
    threads: int = 0
    progress: bool = True
    ray: str | None = None
    ray_workers: int = 2

    def needs_torch_model(self) -> bool:
        return True

    def reads_calib_data(self) -> bool:
        return not self.train

    def validate(self) -> None:
        if self.steps < 1 or self.batch_size < 1 or self.history_every < 1:
            raise ConfigError("finetune: steps, batch_size and history_every must be at least 1")
        if not self.lr > 0:
            raise ConfigError(f"finetune: lr must be > 0, got {self.lr}")
        if self.optimizer not in OPTIMIZERS or self.schedule not in SCHEDULES:
            raise ConfigError(f"finetune: optimizer must be one of {', '.join(OPTIMIZERS)} and schedule one of {', '.join(SCHEDULES)}")
        if self.alpha is not None and not 0.0 <= self.alpha <= 1.0:
            raise ConfigError(f"finetune: alpha must be in [0, 1], got {self.alpha}")
        if not self.temperature > 0:
            raise ConfigError(f"finetune: temperature must be > 0, got {self.temperature}")
        if not 0.0 < self.crop_scale <= 1.0:
            raise ConfigError(f"finetune: crop_scale is the smallest crop's area fraction, in (0, 1], got {self.crop_scale}")
        for name in ("limit", "eval_limit"):
            v = getattr(self, name)
            if v is not None and v < 1:
                raise ConfigError(f"finetune: {name} must be at least 1, got {v}")
        unlabelled = [s for s in self.train if not _labelled(s)]
        if self.alpha and unlabelled:
            raise ConfigError(f"finetune: alpha={self.alpha} weighs a label loss, but {unlabelled[0]!r} has no labels; set alpha 0 (label-free) or train on labelled data")
        if self.exporter not in ("", "auto", "dynamo", "torchscript"):
            raise ConfigError(f"finetune: exporter must be auto, dynamo or torchscript, got {self.exporter!r}")
        if self.resume and not self.checkpoint_dir:
            raise ConfigError("finetune: resume needs checkpoint_dir (where the checkpoints are)")
        if self.checkpoint_every < 1:
            raise ConfigError(f"finetune: checkpoint_every must be at least 1, got {self.checkpoint_every}")
        if self.threads < 0 or self.norm_samples < 0:
            raise ConfigError("finetune: threads and norm_samples must be >= 0")
        if self.ray_workers < 1:
            raise ConfigError(f"finetune: ray_workers must be at least 1, got {self.ray_workers}")
        if self.ray is not None:
            from ..distributed import check_ray_train

            check_ray_train()


def needs_torch_model(stage: Config) -> bool:
    fn = getattr(stage, "needs_torch_model", None)
    return bool(fn and fn())


def _labelled(spec: str) -> bool:
    """A built-in labelled dataset (trtcompress.finetune.data); anything else is read by the job's data reader, without labels."""
    from ..finetune.data import registered_datasets

    return spec.partition(":")[0] in registered_datasets()


@register_stage("finetune", FinetuneStageConfig, after={
    "quantized": After("refuse", "it would retrain weights whose int8 ranges quantize calibrated; run finetune before quantize"),
})
def finetune(model: onnx.ModelProto, config: FinetuneStageConfig) -> StageResult:
    if not isinstance(model, onnx.ModelProto):
        raise ModelError(f"finetune takes the ONNX model the earlier stages wrote, got {type(model).__name__}")
    if not config.torch_model:
        raise ConfigError("finetune trains the torch model the ONNX model was exported from: give torch_model (compress fills it when MODEL is a torch model)")
    if not config.train:
        raise ConfigError("finetune needs training data: give train (compress uses --calib)")
    from ..data.base import model_inputs
    from ..finetune.config import FinetuneConfig
    from ..finetune.recover import Augmented, HeldNorm, measure, recalibrate_norm, structured_student
    from ..finetune.structure import read_structure
    from ..finetune.trainer import finetune as train
    from ..torch_export import load_torch_model

    import torch

    inputs = model_inputs(model)
    if len(inputs) != 1:
        raise ModelError(f"finetune distils single-input models; this one has {len(inputs)} inputs ({', '.join(i.name for i in inputs)})")
    if config.threads:
        torch.set_num_threads(config.threads)
    teacher = load_torch_model(config.torch_model)
    if not isinstance(teacher, torch.nn.Module) or isinstance(teacher, torch.jit.ScriptModule):
        raise ModelError(f"finetune trains an nn.Module; {config.torch_model} gives {type(teacher).__name__}: give a factory (pkg.module:factory or file.py:factory)")
    teacher.eval()
    for p in teacher.parameters():
        p.requires_grad_(False)

    torch.manual_seed(config.seed)
    onnx_structure = read_structure(model)
    student, masks, structure = structured_student(teacher, onnx_structure)
    centroids = _attach_centroids(student, model, masks, config, structure)
    if centroids is not None and config.ray is not None:
        raise ConfigError("finetune: trained centroids (after share) train in one process, not on Ray Train; run this stage without --ray")
    labelled = all(_labelled(s) for s in config.train)
    alpha = config.alpha if config.alpha is not None else (0.5 if labelled else 0.0)
    data = _training_data(config, inputs, labelled)
    eval_data = _eval_data(config, inputs) if config.eval else None
    report: dict[str, Any] = {"structure": structure, "train": list(config.train), "labelled": labelled, "alpha": alpha}
    if eval_data is not None:
        before = measure(teacher, {"before": student}, eval_data)
    t0 = time.perf_counter()
    train_data = Augmented(data, config.crop_scale, True) if config.augment else data
    report["norm_recalibrated_on"] = recalibrate_norm(student, train_data, config.norm_samples)
    norm_seconds = time.perf_counter() - t0
    if eval_data is not None and report["norm_recalibrated_on"]:
        before.update({k.replace("before", "norm_recalibrated"): v for k, v in measure(teacher, {"before": student}, eval_data).items() if k.startswith("agreement") or k == "accuracy_before"})
    trainee = HeldNorm(student) if config.hold_norm else student
    tc = FinetuneConfig(alpha=alpha, temperature=config.temperature, steps=config.steps, lr=config.lr, optimizer=config.optimizer,
                        weight_decay=config.weight_decay, schedule=config.schedule, batch_size=config.batch_size, seed=config.seed,
                        progress=config.progress, threads=config.threads, history_every=config.history_every,
                        checkpoint_dir=config.checkpoint_dir, checkpoint_every=config.checkpoint_every, resume=config.resume)
    t0 = time.perf_counter()
    if config.ray is not None:
        from ..distributed.ray_train import RayTrainOptions, ray_finetune
        from ..userref import absolute_reference

        job = _StageJob(absolute_reference(config.torch_model), onnx_structure, data, config.augment, config.crop_scale, config.hold_norm)
        result = ray_finetune(job, trainee, tc, RayTrainOptions(address=config.ray, workers=config.ray_workers))
        report["ray"] = result.report["ray"]
    else:
        result = train(trainee, teacher, train_data, tc)
    seconds = time.perf_counter() - t0 + norm_seconds
    curve = [list(p) for p in result.report["loss_history"]]
    if result.report["final_loss"] is not None and (not curve or curve[-1][0] < result.steps):
        curve.append([result.steps, result.report["final_loss"]])
    report.update({"steps": result.steps, "seconds": round(seconds, 2), "loss_curve": curve, "final_loss": result.report["final_loss"]})
    if masks is not None:
        broken = masks.check()
        if broken:
            raise ModelError(f"finetune: the 2:4 masks of {', '.join(broken)} did not hold through training")
        masks.remove()
    if centroids is not None:
        structure["centroids"]["snap_shift"] = centroids.snap()  # the INT8 grid's levels back on integers
    student.eval()
    if eval_data is not None:
        after = measure(teacher, {"after": student}, eval_data)
        report["eval"] = {"data": config.eval, "samples": after["samples"],
                          **{k: v for k, v in {**before, **after}.items() if k != "samples"}}
    trained = _bake(centroids) if centroids is not None else None
    report["export"], out = _export(student, model, config)
    if trained is not None:
        from ..share.reshare import reshare

        out, written = reshare(out, trained)
        structure["centroids"]["written"] = written["layers"]
    report["kept"] = _kept(model, out)
    return StageResult(out, report)


@dataclasses.dataclass(frozen=True)
class _StageJob:
    """What a Ray Train worker rebuilds: the teacher from its reference, the student's structure
    from the ONNX model's, the same training batches (the driver's weights replace the student's)."""

    torch_model: str
    structure: Any
    data: Any
    augment: bool
    crop_scale: float
    hold_norm: bool

    def build(self):
        from ..finetune.jobs import TrainParts
        from ..finetune.recover import Augmented, HeldNorm, structured_student
        from ..torch_export import load_torch_model

        teacher = load_torch_model(self.torch_model).eval()
        for p in teacher.parameters():
            p.requires_grad_(False)
        student, _, _ = structured_student(teacher, self.structure)  # its masks hold on this worker's copy
        data = Augmented(self.data, self.crop_scale, True) if self.augment else self.data
        return TrainParts(HeldNorm(student) if self.hold_norm else student, teacher, data)


def _attach_centroids(student, model: onnx.ModelProto, masks, config: FinetuneStageConfig, structure: dict[str, Any]):
    """Shared layers (an earlier ``share``) train their centroids only, indices fixed; None without any."""
    from ..share.read import read_shared

    shared = read_shared(model)
    if not shared:
        if config.centroids_only:
            raise ConfigError("finetune: centroids_only trains shared weights' centroids, and the model has no shared weight; run share before finetune")
        return None
    from ..finetune.centroids import attach_centroids

    cset, report = attach_centroids(student, shared, set(masks.names) if masks is not None else set())
    if config.centroids_only:
        for name, p in student.named_parameters():
            p.requires_grad_(name.endswith("weight_centroids"))
    structure["centroids"] = {"layers": report, "centroids_only": config.centroids_only}
    return cset


def _bake(centroids) -> list:
    """Each shared layer's trained codebook and weight, the modules given plain weights for export."""
    from ..share.reshare import TrainedLayer

    books = centroids.bake()
    return [TrainedLayer(e.layer, books[e.name], e.module.weight.detach().cpu().numpy()) for e in centroids.entries]


# the export may differ from the incoming graph by a fold or two, never by a factorisation undone
_KEPT_TOLERANCE = 1.005


def _kept(before: onnx.ModelProto, after: onnx.ModelProto) -> dict[str, Any]:
    """Parameters and multiply-adds of the incoming and the exported model; a ModelError when the
    export has more (a factorisation lost). The 2:4 layers are checked by the pipeline's contracts."""
    from ..lowrank.flops import model_macs
    from ..model_io import parameter_count

    kept = {"params_before": parameter_count(before), "params_after": parameter_count(after),
            "macs_before": sum(model_macs(before).values()), "macs_after": sum(model_macs(after).values())}
    for what in ("params", "macs"):
        if kept[f"{what}_after"] > kept[f"{what}_before"] * _KEPT_TOLERANCE:
            raise ModelError(f"finetune: the exported model has more {what} than the one it was given ({kept[f'{what}_before']:,} -> {kept[f'{what}_after']:,}): the structure was lost in the torch model; report this with the model")
    return kept


def _read_all(spec: str, inputs, config: FinetuneStageConfig, limit: int | None) -> np.ndarray:
    """Every sample of ``spec`` (the job's data reader, with ``preprocess``), stacked."""
    from ..data.options import DataOptions, open_data

    source = open_data(spec, inputs, DataOptions(limit=limit, preprocess=config.preprocess, inputs=config.inputs))
    arrays = [np.asarray(feed[inputs[0].name]) for feed in source]
    if not arrays:
        raise DataError(f"finetune: {spec} holds no samples")
    x = np.concatenate(arrays)
    if x.dtype.kind != "f":
        raise DataError(f"finetune: {spec} gives {x.dtype} inputs; distillation trains on float inputs")
    return x.astype(np.float32, copy=False)


def _training_data(config: FinetuneStageConfig, inputs, labelled: bool):
    from ..finetune.data import open_training_data
    from ..finetune.recover import UnlabelledBatches

    if labelled:
        if len(config.train) != 1:
            raise ConfigError("finetune: give one labelled dataset as train")
        spec = config.train[0]
        if config.limit and spec.count(":") < 2:
            spec = f"{spec.partition(':')[0]}:train:{config.limit}"
        return open_training_data(spec, config.batch_size, "train")
    x = np.concatenate([_read_all(s, inputs, config, config.limit) for s in config.train])
    return UnlabelledBatches(x, config.batch_size)


def _eval_data(config: FinetuneStageConfig, inputs):
    from ..finetune.data import open_training_data

    import torch

    spec = config.eval or ""
    if _labelled(spec):
        if config.eval_limit and spec.count(":") < 2:
            spec = f"{spec.partition(':')[0]}:test:{config.eval_limit}"
        return list(open_training_data(spec, 256, "test", shuffle=False))
    x = torch.from_numpy(_read_all(spec, inputs, config, config.eval_limit))
    return [(x[i : i + 64], None) for i in range(0, len(x), 64)]


def _export(student, model: onnx.ModelProto, config: FinetuneStageConfig) -> tuple[dict[str, Any], onnx.ModelProto]:
    """Export at the incoming model's opset and batch form, then normalise as the pipeline's first stage did."""
    from ..data.base import model_inputs
    from ..model_io import load_model
    from ..torch_export import ExportConfig, export_module
    from .normalize import NormalizeConfig, normalize

    first = model_inputs(model)[0]
    dynamic = bool(first.shape) and not isinstance(first.shape[0], int)
    specs = config.inputs or (f"{first.name}:" + "x".join(str(d) if isinstance(d, int) and d > 0 else "1" for d in first.shape),)
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 18)
    with tempfile.TemporaryDirectory(prefix="trtcompress-finetune-") as tmp:
        path = Path(tmp) / "student.onnx"
        result = export_module(student, path, ExportConfig(inputs=tuple(specs), opset=max(13, min(opset, 23)), dynamic_batch=dynamic, exporter=config.exporter or "auto"))
        exported = load_model(path)
    out = normalize(exported, NormalizeConfig()).model
    return {"exporter": result.exporter, "check": result.check}, out
