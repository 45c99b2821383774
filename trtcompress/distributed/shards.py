"""Shards of a calibration data set: ranges of sample indices, read where their task runs.

A shard is ``(data spec, data options, start, stop)``: plain values, so a task on another node
opens the same reader (paths on shared storage, or a user's ``module:file.py:function`` reader)
and reads only its samples. A retried task recomputes the same range, so no sample is counted
twice. Shard boundaries fall on whole batches (of the calibration batch and of the model's fixed
batch): each shard's batches are the single-process run's batches, and the merged statistics,
batch count included, are that run's.
"""
from __future__ import annotations

import dataclasses
import math
from pathlib import Path
from typing import Iterator, Sequence

from ..data.base import Feed, ModelInput, _axes, _slice, batch_size_of, rebatch
from ..data.options import DataOptions, open_data
from ..data.readers import Source
from ..errors import ConfigError, DataError

__all__ = ["Shard", "plan_shards", "open_shard", "count_samples", "absolute_spec"]


@dataclasses.dataclass(frozen=True)
class Shard:
    """Samples ``start:stop`` of the data ``spec`` read with ``options`` (its batch is the
    calibration batch; its limit is already applied by the plan)."""

    spec: str
    options: DataOptions
    start: int
    stop: int

    def __post_init__(self) -> None:
        if not 0 <= self.start < self.stop:
            raise ValueError(f"a shard holds samples start:stop with 0 <= start < stop, got {self.start}:{self.stop}")

    @property
    def samples(self) -> int:
        return self.stop - self.start


def absolute_spec(spec: str) -> str:
    """``spec`` with a relative path made absolute: a task's working directory is not the driver's."""
    if Path(spec).exists():
        return str(Path(spec).resolve())
    kind, sep, rest = spec.partition(":")
    if sep and kind in ("module",):  # module:path/to/file.py:function
        target, colon, fn = rest.rpartition(":")
        if target and Path(target).is_file():
            return f"{kind}:{Path(target).resolve()}{colon}{fn}"
    elif sep and rest and Path(rest).exists():
        return f"{kind}:{Path(rest).resolve()}"
    return spec


def _raw(spec: str, inputs: Sequence[ModelInput], options: DataOptions):
    """The reader without its limit (the plan applies it). The batch stays: a generated data set
    (``random``) makes its samples per batch."""
    return open_data(spec, inputs, options.replace(limit=None))


def count_samples(spec: str, inputs: Sequence[ModelInput], options: DataOptions) -> tuple[int, list[ModelInput] | None]:
    """Samples the shards cover (``options.limit`` applied) and the reader's inputs (their batch
    axes). Readers that count from file headers (npz, images, photos) read no data; a user's
    function is run once to count."""
    src = _raw(spec, inputs, options)
    n = getattr(src, "num_samples", None)
    if n is None:
        n = 0
        for feed in src:
            n += batch_size_of(feed, getattr(src, "inputs", None))
            if options.limit is not None and n >= options.limit:
                break
    if options.limit is not None:
        n = min(n, options.limit)
    if n == 0:
        raise DataError(f"the calibration data {spec} is empty; give at least one sample")
    return n, getattr(src, "inputs", None)


def plan_shards(spec: str, options: DataOptions, samples: int, shards: int, align: int = 1) -> list[Shard]:
    """``samples`` split into at most ``shards`` ranges of about equal size, each a multiple of
    ``options.batch`` and ``align`` (the model's fixed batch) samples except the last."""
    if shards < 1:
        raise ConfigError(f"the number of shards must be at least 1, got {shards}")
    unit = math.lcm(options.batch or 1, align)
    units = -(-samples // unit)
    shards = min(shards, units)
    bounds = [min(samples, (units * k // shards) * unit) for k in range(shards + 1)]
    return [Shard(spec, options, a, b) for a, b in zip(bounds, bounds[1:]) if b > a]


class _Range:
    """Samples ``start:stop`` of a reader's feeds, skipping whole items by their stored counts
    (no data read) where the reader gives them."""

    def __init__(self, src, start: int, stop: int):
        self.src, self.start, self.stop = src, start, stop
        self.inputs = getattr(src, "inputs", None)
        self.num_samples = stop - start  # the plan counted them: batches are known for progress

    def __iter__(self) -> Iterator[Feed]:
        pos = 0
        for feed in self._feeds():
            if isinstance(feed, int):  # an item skipped unread: its sample count
                pos += feed
                continue
            n = batch_size_of(feed, self.inputs)
            a, b = max(self.start, pos), min(self.stop, pos + n)
            if b > a:
                yield feed if (a, b) == (pos, pos + n) else _slice(feed, _axes(feed, self.inputs), a - pos, b - pos)
            pos += n
            if pos >= self.stop:
                return

    def _feeds(self) -> Iterator[Feed | int]:
        src = self.src
        # a stored data set's samples are its items' in order, however they are batched: skip items
        inner = src.source if isinstance(src, rebatch) and src.limit is None else src
        if isinstance(inner, Source) and inner.count is not None:
            from ..data.base import validate_feed

            pos = 0
            for item in inner.items:
                n = inner.count(item)
                if pos + n <= self.start:
                    yield n
                else:
                    yield validate_feed(inner.make(item), inner.inputs, inner.name(item))
                pos += n
                if pos >= self.stop:
                    return
        else:
            yield from src


def open_shard(shard: Shard, inputs: Sequence[ModelInput]) -> rebatch:
    """The shard's samples in batches of ``shard.options.batch``, as the single-process reader
    batches them."""
    src = _raw(shard.spec, inputs, shard.options)
    part = _Range(src, shard.start, shard.stop)
    return rebatch(part, shard.options.batch, inputs=part.inputs)
