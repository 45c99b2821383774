"""What a fine-tune trains, built from plain values: a data-parallel worker (Ray Train) builds the
same student, teacher and data where it runs as the driver does (:mod:`trtcompress.distributed.ray_train`)."""
from __future__ import annotations

import dataclasses
from typing import Any

from ..userref import absolute_reference

__all__ = ["TrainParts", "SpecJob"]


@dataclasses.dataclass
class TrainParts:
    """One process's student (its weights are replaced by the driver's on a worker), teacher,
    training batches, evaluation batches (rank 0's before/after accuracy), one example input
    (for the export) and what building the student reported."""

    student: Any
    teacher: Any
    data: Any
    eval_data: Any = None
    example: Any = None
    built: dict[str, Any] | None = None


@dataclasses.dataclass(frozen=True)
class SpecJob:
    """The ``finetune`` verb's inputs by spec: ``teacher`` (zoo:NAME or a factory), ``student`` (a
    factory) or ``transform`` (NAME:options), ``data`` and ``eval_data`` (open_training_data specs)."""

    teacher: str
    data: str
    batch_size: int
    student: str | None = None
    transform: str | None = None
    eval_data: str | None = None

    def absolute(self) -> "SpecJob":
        """File paths in the specs made absolute, for workers whose working directory differs."""
        ref = lambda s: absolute_reference(s) if s else s  # noqa: E731
        return dataclasses.replace(self, teacher=ref(self.teacher), student=ref(self.student), data=ref(self.data), eval_data=ref(self.eval_data))

    def build(self) -> TrainParts:
        from .data import open_training_data
        from .models import load_module
        from .transforms import apply_transform

        teacher = load_module(self.teacher, "teacher")
        data = open_training_data(self.data, self.batch_size, "train")
        eval_data = open_training_data(self.eval_data, 256, "test", shuffle=False) if self.eval_data else None
        example = next(iter(data))[0][:1]
        if self.transform:
            student, built = apply_transform(self.transform, teacher, example)
        else:
            student, built = load_module(self.student or "", "student", teacher), None
        return TrainParts(student, teacher, data, eval_data, example, built)
