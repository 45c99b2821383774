"""Input specs given on the command line: ``x:1x3x224x224`` or ``ids:1x64:int64``."""
from __future__ import annotations

import dataclasses
import re
from typing import Sequence

import numpy as np

from .errors import ConfigError

__all__ = ["InputSpec", "parse_input_spec", "parse_input_specs", "spec_batch_axes"]

_DTYPES = {
    "float32": np.float32, "fp32": np.float32, "float": np.float32,
    "float16": np.float16, "fp16": np.float16,
    "float64": np.float64,
    "int64": np.int64, "int32": np.int32, "int8": np.int8, "uint8": np.uint8, "bool": np.bool_,
}


@dataclasses.dataclass(frozen=True)
class InputSpec:
    """One model input: name, shape (ints; a string names a dynamic dimension) and dtype name."""

    name: str
    shape: tuple[int | str, ...]
    dtype: str = "float32"

    @property
    def np_dtype(self) -> np.dtype:
        return np.dtype(_DTYPES[self.dtype])

    @property
    def batch_axis(self) -> int | None:
        """The axis the spec names (``state:2xNx128``: 1); None when every dimension is a number."""
        named = [i for i, d in enumerate(self.shape) if not isinstance(d, int)]
        return named[0] if named else None

    def concrete_shape(self, batch: int | None = None, axis: int | None = 0) -> tuple[int, ...]:
        """The shape with the batch (``batch``, else 1) on its named dimension, or on ``axis``
        when every dimension is a number and ``batch`` is given.

        Readers pass no batch: they put the batch size on the model's own batch axis, which need
        not be axis 0 (a recurrent state [2, batch, 128])."""
        named = [d for d in self.shape if not isinstance(d, int)]
        if len(named) > 1:
            raise ConfigError(f"input {self.name!r} names dimensions {', '.join(map(str, named))}; give numbers for all but the batch, e.g. {self.name}:2xNx128")
        dims = [d if isinstance(d, int) else (batch or 1) for d in self.shape]
        if batch is not None and not named and axis is not None and axis < len(dims):
            dims[axis] = batch
        return tuple(dims)

    def __str__(self) -> str:
        return f"{self.name}:{'x'.join(str(d) for d in self.shape)}:{self.dtype}"


def parse_input_spec(text: str) -> InputSpec:
    parts = text.strip().split(":")
    if len(parts) not in (2, 3) or not parts[0]:
        raise ConfigError(f"bad input spec {text!r}; expected NAME:DIMS[:DTYPE], e.g. x:1x3x224x224 or ids:1x64:int64")
    name, dims_text = parts[0], parts[1]
    dtype = parts[2].lower() if len(parts) == 3 else "float32"
    if dtype not in _DTYPES:
        raise ConfigError(f"bad dtype {dtype!r} in input spec {text!r}; choose one of {', '.join(sorted(_DTYPES))}")
    dims: list[int | str] = []
    for d in dims_text.lower().split("x") if dims_text else []:
        if re.fullmatch(r"\d+", d):
            if int(d) <= 0:
                raise ConfigError(f"dimension {d} in input spec {text!r} must be positive")
            dims.append(int(d))
        elif re.fullmatch(r"[a-z_][a-z0-9_]*", d):
            dims.append(d)
        else:
            raise ConfigError(f"bad dimension {d!r} in input spec {text!r}; use integers separated by 'x'")
    canonical = {"fp32": "float32", "float": "float32", "fp16": "float16"}.get(dtype, dtype)
    return InputSpec(name, tuple(dims), canonical)


def parse_input_specs(texts: Sequence[str] | None) -> list[InputSpec]:
    specs = [parse_input_spec(t) for t in texts or []]
    names = [s.name for s in specs]
    if len(set(names)) != len(names):
        raise ConfigError(f"input names repeat in {', '.join(texts or [])}")
    return specs


def spec_batch_axes(specs: Sequence[InputSpec]) -> dict[str, int | None] | None:
    """The batch axes the specs name (``state:2xNx128`` puts the batch of ``state`` on axis 1)."""
    return {s.name: s.batch_axis for s in specs if s.batch_axis is not None} or None
