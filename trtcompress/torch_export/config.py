"""Export options and result."""
from __future__ import annotations

import dataclasses
from typing import Any

from ..config import Config
from ..errors import ConfigError
from ..specs import InputSpec, parse_input_specs

EXPORTERS = ("auto", "dynamo", "torchscript")


@dataclasses.dataclass(frozen=True)
class ExportConfig(Config):
    """``inputs`` are specs like ``x:1x3x224x224`` or ``ids:1x64:int64``, in the model's argument order."""

    inputs: tuple[str, ...] = ()
    opset: int = 18
    dynamic_batch: bool = True
    exporter: str = "auto"
    check_batches: int = 2  # random batches checked against torch
    seed: int = 0
    external_data: bool | None = None  # None: only when the model is over the protobuf limit

    def validate(self) -> None:
        if self.exporter not in EXPORTERS:
            raise ConfigError(f"exporter must be one of {', '.join(EXPORTERS)}, got {self.exporter!r}")
        if not 13 <= self.opset <= 23:
            raise ConfigError(f"opset {self.opset} is not supported; choose 13..23 (TensorRT 8.6+ parses 13..17, 10.x up to 20+)")
        self.specs()  # parse now so a bad spec fails early

    def specs(self) -> list[InputSpec]:
        return parse_input_specs(self.inputs)


@dataclasses.dataclass
class ExportResult:
    path: str
    exporter: str
    fallback_reason: str | None
    inputs: list[str]
    outputs: list[str]
    check: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)
