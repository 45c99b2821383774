"""QAT's training batches: the job's data read by its reader (no labels: label-free distillation on
random resized crops and flips of image inputs), or a built-in labelled dataset (with labels)."""
from __future__ import annotations

import hashlib
from typing import Any, Sequence

import numpy as np
import onnx

from ...data.base import model_inputs
from ...data.options import DataOptions, open_data
from ...errors import ConfigError, DataError, ModelError

__all__ = ["TrainingData", "training_data", "is_labelled"]


def is_labelled(spec: str) -> bool:
    from ...finetune.data import registered_datasets

    return spec.partition(":")[0] in registered_datasets()


class TrainingData:
    """Batches for the trainer, whether they have labels, and a digest of the samples (part of the checkpoint key)."""

    def __init__(self, batches: Any, labelled: bool, samples: int, digest: str):
        self.batches, self.labelled, self.samples, self.digest = batches, labelled, samples, digest


def training_data(model: onnx.ModelProto, specs: Sequence[str], batch: int, options: DataOptions, augment: bool, crop_scale: float = 0.35) -> TrainingData:
    """``specs`` read for ``model``'s single input: all built-in labelled datasets, or all data the job's reader reads."""
    from ...finetune.data import open_training_data
    from ...finetune.recover import Augmented, UnlabelledBatches

    inputs = model_inputs(model)
    if len(inputs) != 1:
        raise ModelError(f"quantization-aware training distils single-input models; this one has {len(inputs)} inputs ({', '.join(i.name for i in inputs)})")
    labelled = [is_labelled(s) for s in specs]
    if any(labelled) and not all(labelled):
        raise ConfigError(f"qat_data mixes labelled datasets and unlabelled data ({', '.join(specs)}); give one kind")
    if all(labelled):
        if len(specs) != 1:
            raise ConfigError("qat_data: give one labelled dataset")
        data = open_training_data(specs[0], batch, "train")
        n = sum(len(x) for x, _ in data)
        return TrainingData(data, True, n, hashlib.sha256(specs[0].encode()).hexdigest())
    arrays = []
    for spec in specs:
        source = open_data(spec, inputs, options)
        got = [np.asarray(feed[inputs[0].name]) for feed in source]
        if not got:
            raise DataError(f"qat: {spec} holds no samples")
        arrays.append(np.concatenate(got))
    x = np.concatenate(arrays)
    if x.dtype.kind != "f":
        raise DataError(f"qat: the data gives {x.dtype} inputs; distillation trains on float inputs")
    x = np.ascontiguousarray(x, dtype=np.float32)
    batches: Any = UnlabelledBatches(x, batch)
    if augment and x.ndim == 4:
        batches = Augmented(batches, crop_scale, True)
    return TrainingData(batches, False, len(x), hashlib.sha256(x.tobytes() + repr((augment, crop_scale)).encode()).hexdigest())
