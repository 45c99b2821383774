"""The calibration result shared by every lowering: one amax (clip threshold) per activation tensor.

Calibration (statistics + a method) produces it; the TensorRT Q/DQ writer, the CPU lowering and the
TensorRT calibration cache all consume it, so one calibration serves every target.
"""
from __future__ import annotations

import dataclasses
import json
from typing import Any

from ..errors import DataError

__all__ = ["CalibrationTable"]


@dataclasses.dataclass
class CalibrationTable:
    """``amax[tensor]`` is the clip threshold; the symmetric INT8 scale is ``amax / 127``."""

    amax: dict[str, float]
    method: str
    num_samples: int = 0
    details: dict[str, Any] = dataclasses.field(default_factory=dict)

    def scale(self, tensor: str) -> float:
        return self.amax[tensor] / 127.0

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    @classmethod
    def from_json(cls, text: str) -> "CalibrationTable":
        try:
            return cls(**json.loads(text))
        except (TypeError, ValueError) as e:
            raise DataError(f"not a trtcompress calibration table ({e}); recalibrate") from e
