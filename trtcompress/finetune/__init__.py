"""Recovery by knowledge distillation: fine-tune a compressed student against its dense teacher.

Torch is imported inside the functions, so importing this package needs no torch.
"""
from __future__ import annotations

from .config import FinetuneConfig
from .data import ArrayBatches, TrainData, open_training_data, register_dataset, registered_datasets
from ..userref import load_callable
from .loss import distillation_loss
from .trainer import FinetuneResult, evaluate, finetune
from .transforms import apply_transform, register_transform, registered_transforms

__all__ = [
    "FinetuneConfig",
    "finetune",
    "FinetuneResult",
    "evaluate",
    "distillation_loss",
    "open_training_data",
    "register_dataset",
    "registered_datasets",
    "TrainData",
    "ArrayBatches",
    "load_callable",
    "apply_transform",
    "register_transform",
    "registered_transforms",
]
