"""Typed configuration of a distillation fine-tune."""
from __future__ import annotations

import dataclasses

from ..config import Config
from ..errors import ConfigError

__all__ = ["FinetuneConfig", "OPTIMIZERS", "SCHEDULES"]

OPTIMIZERS = ("adam", "adamw", "sgd")
SCHEDULES = ("constant", "cosine")
# fields that define the training trajectory: a resumed run must use the same values
TRAJECTORY_FIELDS = ("alpha", "temperature", "lr", "optimizer", "momentum", "weight_decay", "schedule", "batch_size", "seed", "epochs", "steps")


@dataclasses.dataclass(frozen=True)
class FinetuneConfig(Config):
    """Knowledge distillation of a student from a dense teacher.

    loss = alpha * CE(student, labels) + (1 - alpha) * T^2 * KL(softmax(teacher/T) || softmax(student/T)).
    Training runs ``steps`` optimizer steps when given, else ``epochs`` passes over the data.
    Checkpoints go to ``checkpoint_dir`` every ``checkpoint_every`` steps and at the end;
    ``resume`` continues from the last one there, bit-identically for the same seed and data.
    """

    alpha: float = 0.5
    temperature: float = 4.0
    epochs: int = 1
    steps: int | None = None
    lr: float = 1e-3
    optimizer: str = "adam"
    momentum: float = 0.9
    weight_decay: float = 0.0
    schedule: str = "constant"
    batch_size: int = 64  # for the built-in datasets; a user's DataLoader keeps its own
    seed: int = 0
    checkpoint_dir: str | None = None
    checkpoint_every: int = 200
    resume: bool = False
    progress: bool = True
    threads: int = 0  # torch intra-op threads (0: leave torch's default)
    history_every: int = 50  # steps averaged into one point of the loss history


    def validate(self) -> None:
        if not 0.0 <= self.alpha <= 1.0:
            raise ConfigError(f"finetune alpha must be in [0, 1], got {self.alpha}")
        if not self.temperature > 0.0:
            raise ConfigError(f"finetune temperature must be > 0, got {self.temperature}")
        if self.epochs < 1:
            raise ConfigError(f"finetune epochs must be at least 1, got {self.epochs}")
        if self.steps is not None and self.steps < 1:
            raise ConfigError(f"finetune steps must be at least 1, got {self.steps}")
        if not self.lr > 0.0:
            raise ConfigError(f"finetune lr must be > 0, got {self.lr}")
        if self.optimizer not in OPTIMIZERS:
            raise ConfigError(f"finetune optimizer {self.optimizer!r} is not one of {', '.join(OPTIMIZERS)}")
        if self.schedule not in SCHEDULES:
            raise ConfigError(f"finetune schedule {self.schedule!r} is not one of {', '.join(SCHEDULES)}")
        if self.batch_size < 1 or self.checkpoint_every < 1 or self.history_every < 1 or self.threads < 0:
            raise ConfigError("finetune batch_size, checkpoint_every and history_every must be at least 1, threads >= 0")
        if self.resume and not self.checkpoint_dir:
            raise ConfigError("finetune resume needs checkpoint_dir (where the checkpoints are)")
