"""The low-rank configuration shared by the ONNX stage and the torch transform."""
from __future__ import annotations

import dataclasses

from ..config import Config
from ..errors import ConfigError
from ..specs import parse_input_specs
from .svd import SVD_METHODS

__all__ = ["LowRankConfig", "RANK_RULES", "ALLOCATIONS"]

RANK_RULES = ("energy", "error", "flops")
ALLOCATIONS = ("greedy", "uniform")
_OPS = ("Conv", "Gemm", "MatMul")


@dataclasses.dataclass(frozen=True)
class LowRankConfig(Config):
    """How ranks are chosen and which layers are factorised.

    ``rule``: ``energy`` keeps the smallest rank holding ``energy`` of each weight's squared
    singular values; ``error`` the smallest rank whose layer output, on calibration data, is within
    ``error`` relative (Frobenius) error of the dense layer; ``flops`` allocates ranks greedily by
    energy gained per FLOP until the factorised layers cost ``flop_fraction`` of their dense FLOPs.
    A layer is left dense when its rank would not cut FLOPs by at least ``min_flop_saving``.
    """

    rule: str = "energy"
    energy: float = 0.95
    error: float = 0.05
    flop_fraction: float = 0.5
    allocation: str = "greedy"
    ops: tuple[str, ...] = _OPS
    exclude: tuple[str, ...] = ()  # layer names or fnmatch patterns left dense
    min_flop_saving: float = 0.0
    min_rank: int = 1
    rank_multiple: int = 1  # round ranks up to a multiple (8 suits tensor cores)
    svd: str = "auto"
    randomized_min_dim: int = 1024
    oversample: int = 10
    power_iters: int = 2
    seed: int = 0
    # calibration data for rule="error" (ONNX stage): a trtcompress.data spec; compress fills it from --calib (or --data)
    calib: str | None = None
    preprocess: str | None = None
    limit: int | None = 32  # calibration samples used (None: all)
    batch: int = 8
    inputs: tuple[str, ...] = ()  # shapes of dynamic calibration inputs, e.g. "ids:1x128:int64"

    def reads_calib_data(self) -> bool:
        return self.rule == "error"

    def validate(self) -> None:
        if self.rule not in RANK_RULES:
            raise ConfigError(f"lowrank rule {self.rule!r} is not one of {', '.join(RANK_RULES)}")
        if not 0.0 < self.energy <= 1.0:
            raise ConfigError(f"lowrank energy must be in (0, 1], got {self.energy}")
        if not self.error > 0.0:
            raise ConfigError(f"lowrank error budget must be > 0, got {self.error}")
        if not 0.0 < self.flop_fraction < 1.0:
            raise ConfigError(f"lowrank flop_fraction must be in (0, 1), got {self.flop_fraction}")
        if self.allocation not in ALLOCATIONS:
            raise ConfigError(f"lowrank allocation {self.allocation!r} is not one of {', '.join(ALLOCATIONS)}")
        if not 0.0 <= self.min_flop_saving < 1.0:
            raise ConfigError(f"lowrank min_flop_saving must be in [0, 1), got {self.min_flop_saving}")
        bad = [o for o in self.ops if o not in _OPS]
        if bad:
            raise ConfigError(f"lowrank ops {', '.join(bad)} not supported; choose from {', '.join(_OPS)}")
        if self.min_rank < 1 or self.rank_multiple < 1:
            raise ConfigError("lowrank min_rank and rank_multiple must be at least 1")
        if self.svd not in SVD_METHODS:
            raise ConfigError(f"lowrank svd {self.svd!r} is not one of {', '.join(SVD_METHODS)}")
        if self.oversample < 0 or self.power_iters < 0 or self.randomized_min_dim < 1:
            raise ConfigError("lowrank oversample and power_iters must be >= 0, randomized_min_dim >= 1")
        if (self.limit is not None and self.limit < 1) or self.batch < 1:
            raise ConfigError("lowrank limit and batch must be at least 1")
        parse_input_specs(self.inputs)
