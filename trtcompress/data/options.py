"""The user's data options, and the one function that opens a reader from them.

Every verb and the main job take the same options (``--batch``, ``--limit``, ``--seed``,
``--preprocess``, ``--input NAME:DIMS``), from flags, a recipe or a stage config; they become a
:class:`DataOptions` and a reader only through :func:`open_data`, so ``--input x:1x3x224x224`` or
``--preprocess efficientnet-lite`` mean the same thing to compare, bench, quantize and compress.
"""
from __future__ import annotations

import dataclasses
from typing import Sequence

from ..config import Config
from ..specs import InputSpec, parse_input_specs, spec_batch_axes
from .base import ModelInput, with_batch_axes
from .preprocess import PreprocessConfig
from .readers import ReaderOptions, Source, open_source

__all__ = ["DataOptions", "open_data"]


@dataclasses.dataclass(frozen=True)
class DataOptions(Config):
    """``batch``: samples per feed (None: as stored; one file, one yielded feed, 1 for random
    data). ``limit``: at most this many samples. ``seed``: of random inputs. ``preprocess``: an
    image preprocessing spec (a preset and/or key=value,...). ``inputs``: ``NAME:DIMS[:DTYPE]``
    shapes for dynamic dimensions; a named dimension marks the batch axis (``state:2xNx128``)."""

    batch: int | None = None
    limit: int | None = None
    seed: int = 0
    preprocess: str | None = None
    inputs: tuple[str, ...] = ()

    def validate(self) -> None:
        # parsed here so a bad spec is refused when the options are built, before any work
        if self.preprocess:
            PreprocessConfig.parse(self.preprocess)
        self.specs()

    def specs(self) -> list[InputSpec]:
        return parse_input_specs(list(self.inputs))

    def batch_axes(self) -> dict[str, int | None] | None:
        """The batch axis the user gave per input (None: the model's own)."""
        return spec_batch_axes(self.specs())

    def with_batch_axes(self, inputs: Sequence[ModelInput]) -> list[ModelInput]:
        """``inputs`` with the batch axes the user gave."""
        return with_batch_axes(inputs, self.batch_axes())

    def reader_options(self) -> ReaderOptions:
        specs = self.specs()
        return ReaderOptions(
            batch_size=self.batch,
            limit=self.limit,
            seed=self.seed,
            preprocess=PreprocessConfig.parse(self.preprocess) if self.preprocess else None,
            shapes={s.name: s.concrete_shape() for s in specs} or None,
            batch_axes=spec_batch_axes(specs),
        )


def open_data(spec: str, inputs: Sequence[ModelInput], options: DataOptions | None = None) -> Source:
    """The reader of data ``spec`` (``random[:N]``, .npz/.npy files, an image folder, ``photos:SPLIT``,
    ``module:...``) for a model with ``inputs``, as ``options`` say."""
    return open_source(spec, inputs, (options or DataOptions()).reader_options())
