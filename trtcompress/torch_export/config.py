"""Export options and result."""
from __future__ import annotations

import dataclasses
import re
from typing import Any

from ..config import Config
from ..errors import ConfigError
from ..specs import InputSpec, parse_input_specs

EXPORTERS = ("auto", "dynamo", "torchscript")


@dataclasses.dataclass(frozen=True)
class ExportConfig(Config):
    """``inputs`` are specs like ``x:1x3x224x224`` or ``ids:1x64:int64``, in the model's argument order.

    ``dynamic`` makes more dimensions than the batch dynamic: ``x:0,2,3`` (axis 0 is named
    ``batch``, others ``x_dim2``...) or ``x:0=batch,2=height,3=width``; a name shared between
    inputs is one dimension. With ``dynamic_batch`` every input keeps a dynamic axis 0 as well.
    """

    inputs: tuple[str, ...] = ()
    opset: int = 18
    dynamic_batch: bool = True
    dynamic: tuple[str, ...] = ()
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
        self.dynamic_axes()

    def specs(self) -> list[InputSpec]:
        return parse_input_specs(self.inputs)

    def dynamic_axes(self) -> dict[str, dict[int, str]]:
        """Input name -> {axis: dimension name} for every dynamic dimension of every input."""
        specs = {s.name: s for s in self.specs()}
        out = {name: {0: "batch"} for name, s in specs.items() if self.dynamic_batch and s.shape}
        for text in self.dynamic:
            name, sep, axes = text.partition(":")
            if not sep or not axes:
                raise ConfigError(f"bad dynamic spec {text!r}; expected NAME:AXES, e.g. x:0,2,3 or x:0=batch,2=height,3=width")
            if name not in specs:
                raise ConfigError(f"dynamic spec {text!r} names {name!r}, which is not an input ({', '.join(specs) or 'none given'}); give --input {name}:... too")
            rank = len(specs[name].shape)
            dims = dict(out.get(name, {}))  # the batch stays dynamic unless static was asked for
            for part in axes.split(","):
                axis_text, _, dim = part.strip().partition("=")
                if not re.fullmatch(r"\d+", axis_text) or int(axis_text) >= rank:
                    raise ConfigError(f"bad axis {axis_text!r} in dynamic spec {text!r}; {name} has axes 0..{rank - 1}")
                axis = int(axis_text)
                if dim and not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", dim):
                    raise ConfigError(f"bad dimension name {dim!r} in dynamic spec {text!r}; use letters, digits and _")
                dims[axis] = dim or ("batch" if axis == 0 and self.dynamic_batch else f"{name}_dim{axis}")
            out[name] = dims
        return out


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
