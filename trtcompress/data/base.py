"""Feed sources, model input metadata, and the checks every feed goes through."""
from __future__ import annotations

import dataclasses
import hashlib
import os
import re
from typing import TYPE_CHECKING, Iterable, Iterator, Mapping, Protocol, Sequence

import numpy as np
import onnx

from ..errors import DataError


if TYPE_CHECKING:  # only for the annotation of ModelInput.values
    from .values import IntValues

__all__ = ["FeedSource", "ListSource", "ModelInput", "model_inputs", "with_batch_axes", "batch_size_of", "add_batch_axis", "validate_feed", "rebatch", "SampleKeeper"]

Feed = dict[str, np.ndarray]


class FeedSource(Protocol):
    """An iterable of feeds (batch dimension included). ``len()`` is the number of feeds."""

    def __iter__(self) -> Iterator[Feed]: ...

    def __len__(self) -> int: ...


@dataclasses.dataclass(frozen=True)
class ModelInput:
    """An ONNX graph input: ``shape`` holds ``None`` or a name for a dynamic dimension.

    ``batch_axis`` is the axis that indexes samples (``None``: the input has no batch, e.g. a
    scalar sample rate, and is fed as it is). ``values`` describes valid integer data (see
    :class:`~trtcompress.data.values.IntValues`); ``None`` for float inputs or when unknown.
    """

    name: str
    shape: tuple[int | str | None, ...]
    dtype: np.dtype
    batch_axis: int | None = 0
    values: "IntValues | None" = None

    def __post_init__(self) -> None:
        if self.batch_axis is not None and not 0 <= self.batch_axis < max(len(self.shape), 1):
            raise DataError(f"input {self.name!r} of rank {len(self.shape)} has no axis {self.batch_axis} to hold the batch")

    def is_dynamic(self) -> bool:
        return any(not isinstance(d, int) for d in self.shape)


def model_inputs(model: onnx.ModelProto | str | os.PathLike) -> list[ModelInput]:
    """The real inputs of a model (graph inputs that are not initialisers), each with the axis
    that holds its batch (:func:`batch_axes`) and, for integer inputs, its valid values."""
    if not isinstance(model, onnx.ModelProto):
        from ..model_io import load_model

        model = load_model(model, load_external_data=False, check=False)
    from .values import integer_values

    inits = {t.name for t in model.graph.initializer}
    raw = []
    for vi in model.graph.input:
        if vi.name in inits:
            continue
        tt = vi.type.tensor_type
        shape: list[int | str | None] = []
        for d in tt.shape.dim:
            if d.HasField("dim_value") and d.dim_value > 0:
                shape.append(int(d.dim_value))
            else:
                shape.append(d.dim_param or None)
        raw.append((vi.name, tuple(shape), np.dtype(onnx.helper.tensor_dtype_to_np_dtype(tt.elem_type))))
    outputs = [tuple(d.dim_param or None if not d.HasField("dim_value") else int(d.dim_value) for d in o.type.tensor_type.shape.dim) for o in model.graph.output]
    axes = batch_axes([s for _, s, _ in raw], outputs)
    ints = [n for n, _, dt in raw if dt.kind in "iub"]
    values = integer_values(model, ints) if ints else {}
    return [ModelInput(n, s, dt, axis, values.get(n)) for (n, s, dt), axis in zip(raw, axes)]


def batch_axes(shapes: Sequence[Sequence[int | str | None]], outputs: Sequence[Sequence[int | str | None]] = ()) -> list[int | None]:
    """The batch axis of each input shape.

    The batch is the named dynamic dimension that the most inputs (then outputs) share, a name
    with "batch" in it winning ties (a recurrent state [2, batch, 128] holds it on axis 1); names
    of sequences, sizes and channels (``_NOT_BATCH``) never are. An input without that name holds
    the batch on its first unnamed dynamic dimension (silero-vad's [?, ?] and [2, ?, 128]); a
    scalar, or a static input of a model whose batch is named elsewhere, holds none. With no batch
    name anywhere, an input with no unnamed dynamic dimension holds it on axis 0 (a fixed batch).
    """
    # "?" (paddle2onnx) and "unk__N" (ONNX shape inference) say "unknown", not a shared name
    shapes, outputs = ([[None if isinstance(d, str) and _UNKNOWN.match(d) else d for d in s] for s in group] for group in (shapes, outputs))
    count: dict[str, list[int]] = {}
    for k, shape in enumerate(list(shapes) + list(outputs)):
        for d in dict.fromkeys(d for d in shape if isinstance(d, str) and not _NOT_BATCH.search(d.lower())):
            c = count.setdefault(d, [0, 0])
            c[0 if k < len(shapes) else 1] += 1
    symbol = None
    if count:
        # most inputs, then most outputs, then a name that says batch, then the earliest position
        first = {d: min(s.index(d) for s in list(shapes) + list(outputs) if d in s) for d in count}
        symbol = max(count, key=lambda d: (count[d][0], count[d][1], "batch" in d.lower(), -first[d]))
    out: list[int | None] = []
    for shape in shapes:
        shape = list(shape)
        if not shape:
            out.append(None)
        elif symbol is not None and symbol in shape:
            out.append(shape.index(symbol))
        elif None in shape:
            out.append(shape.index(None))
        else:
            out.append(None if symbol is not None else 0)
    return out


# dimension names that are never the batch (a model with a fixed batch of 1 and a dynamic sequence)
_UNKNOWN = re.compile(r"^(\?|unk__\d+|)$")
_NOT_BATCH = re.compile(r"seq|len|height|width|time|token|frame|channel|pixel|^h$|^w$")


def with_batch_axes(inputs: Sequence[ModelInput], axes: Mapping[str, int | None] | None) -> list[ModelInput]:
    """``inputs`` with the batch axes the user gave (``--input state:2xNx128`` names axis 1)."""
    if not axes:
        return list(inputs)
    return [dataclasses.replace(i, batch_axis=axes[i.name]) if i.name in axes else i for i in inputs]


def batch_size_of(feed: Mapping[str, np.ndarray], inputs: Sequence[ModelInput] | None = None) -> int:
    """Samples in ``feed``: the size of every batched input along its batch axis (1 when no
    input carries a batch)."""
    axes = _axes(feed, inputs)
    sizes = {v.shape[axes[k]] for k, v in feed.items() if axes.get(k) is not None and v.ndim > axes[k]}
    if len(sizes) > 1:
        raise DataError(f"inputs in one feed have different batch sizes {sorted(sizes)}")
    return sizes.pop() if sizes else 1


def _axes(feed: Mapping[str, np.ndarray], inputs: Sequence[ModelInput] | None) -> dict[str, int | None]:
    if inputs is None:
        return {k: (0 if np.ndim(v) else None) for k, v in feed.items()}
    known = {i.name: i.batch_axis for i in inputs}
    return {k: known.get(k, 0 if np.ndim(v) else None) for k, v in feed.items()}


def validate_feed(feed: Mapping[str, np.ndarray], inputs: Sequence[ModelInput], sample: str) -> Feed:
    """Check names, dtypes, shapes and finiteness; returns the feed with exact model dtypes.

    Integer data may be given for a float input of the same kind of range (e.g. uint8 images) only
    through a preprocessing spec, so a dtype mismatch is an error rather than a silent cast.
    """
    names = [i.name for i in inputs]
    missing = [n for n in names if n not in feed]
    if missing:
        raise DataError(f"{sample}: missing input(s) {', '.join(missing)}; the model expects {', '.join(names)} (got {', '.join(feed) or 'nothing'})")
    extra = [n for n in feed if n not in names]
    if extra:
        raise DataError(f"{sample}: unknown input(s) {', '.join(extra)}; the model expects {', '.join(names)}")
    out: Feed = {}
    for inp in inputs:
        a = np.asarray(feed[inp.name])
        if a.dtype != inp.dtype:
            same_kind = a.dtype.kind == inp.dtype.kind or (a.dtype.kind in "iu" and inp.dtype.kind in "iu")
            if not same_kind:
                raise DataError(f"{sample}: input {inp.name!r} has dtype {a.dtype}, the model expects {inp.dtype}; convert the data")
            a = a.astype(inp.dtype)
        if a.ndim != len(inp.shape):
            raise DataError(f"{sample}: input {inp.name!r} has shape {list(a.shape)}, the model expects rank {len(inp.shape)} {_fmt(inp.shape)}")
        for i, (have, want) in enumerate(zip(a.shape, inp.shape)):
            if isinstance(want, int) and have != want:
                raise DataError(f"{sample}: input {inp.name!r} has shape {list(a.shape)}, the model expects {_fmt(inp.shape)} (dimension {i} differs)")
        if a.dtype.kind == "f" and not np.isfinite(a).all():
            bad = "NaN" if np.isnan(a).any() else "Inf"
            raise DataError(f"{sample}: input {inp.name!r} contains {bad}; clean or drop this sample")
        out[inp.name] = a
    return out


def _fmt(shape: Sequence[int | str | None]) -> str:
    return "[" + ", ".join("?" if d is None else str(d) for d in shape) + "]"


class ListSource:
    """A source over feeds held in memory."""

    def __init__(self, feeds: Iterable[Feed]):
        self.feeds = list(feeds)

    def __iter__(self) -> Iterator[Feed]:
        return iter(self.feeds)

    def __len__(self) -> int:
        return len(self.feeds)


class rebatch:
    """Regroup a source's feeds into batches of ``batch_size`` samples (the last may be short),
    stopping after ``limit`` samples.

    Feeds are sliced and joined along each input's batch axis (``inputs``, or the source's own
    ``inputs``; axis 0 when neither says), never split sample by sample; inputs without a batch
    (a scalar sample rate) are passed on as they are. A feed that already is one batch passes
    through without a copy: memory holds one batch plus one source feed, whatever the files hold.
    ``batch_size=None`` keeps the source's own feeds (only ``limit`` applies). A source with a
    ``num_samples`` attribute (counted without reading the data) gives ``len()`` cheaply.
    """

    def __init__(self, source: FeedSource, batch_size: int | None, limit: int | None = None, inputs: Sequence[ModelInput] | None = None):
        if batch_size is not None and batch_size < 1:
            raise DataError(f"batch size must be at least 1, got {batch_size}")
        self.source, self.batch_size, self.limit = source, batch_size, limit
        self.inputs = list(inputs) if inputs is not None else getattr(source, "inputs", None)

    @property
    def num_samples(self) -> int | None:
        return getattr(self.source, "num_samples", None)

    def __iter__(self) -> Iterator[Feed]:
        pending: list[Feed] = []
        have, left = 0, self.limit if self.limit is not None else -1
        for feed in self.source:
            axes = _axes(feed, self.inputs)
            n = batch_size_of(feed, self.inputs)
            if left >= 0 and n > left:
                feed, n = _slice(feed, axes, 0, left), left
            if n:
                if self.batch_size is None:
                    yield feed
                else:
                    pending.append(feed)
                    have += n
                    while have >= self.batch_size:
                        yield _cut(pending, self.batch_size, axes, self.inputs)
                        have -= self.batch_size
            if left >= 0:
                left -= n
                if left == 0:
                    break
        if pending:
            yield _join(pending, _axes(pending[0], self.inputs))

    @property
    def length_known(self) -> bool:
        if self.batch_size is None and self.limit is None:
            return getattr(self.source, "length_known", True)
        return self.batch_size is not None and self.num_samples is not None

    def __len__(self) -> int:
        if self.batch_size is None and self.limit is None:
            return len(self.source)
        if self.batch_size is None or self.num_samples is None:
            return sum(1 for _ in self)  # reads the data: callers check ``length_known`` first
        n = self.num_samples if self.limit is None else min(self.num_samples, self.limit)
        return -(-n // self.batch_size)


def _slice(feed: Feed, axes: Mapping[str, int | None], start: int, stop: int | None) -> Feed:
    """Samples ``start:stop`` of ``feed`` along each input's batch axis (unbatched inputs whole)."""
    out = {}
    for k, v in feed.items():
        ax = axes.get(k)
        if ax is None or v.ndim <= ax:
            out[k] = v
        else:
            index = [slice(None)] * v.ndim
            index[ax] = slice(start, stop)
            out[k] = v[tuple(index)]
    return out


def _cut(pending: list[Feed], k: int, axes: Mapping[str, int | None], inputs: Sequence[ModelInput] | None) -> Feed:
    """Remove the first ``k`` samples from ``pending`` (a list of feeds) and return them as one feed."""
    out: list[Feed] = []
    while k:
        f = pending[0]
        n = batch_size_of(f, inputs)
        if n <= k:
            out.append(pending.pop(0))
            k -= n
        else:
            out.append(_slice(f, axes, 0, k))
            pending[0] = _slice(f, axes, k, None)
            k = 0
    return _join(out, axes)


def _join(feeds: list[Feed], axes: Mapping[str, int | None]) -> Feed:
    """One feed from several, joined along each input's batch axis; an input without a batch must
    hold the same value in all of them (it is one setting, like a sample rate)."""
    if len(feeds) == 1:
        return feeds.pop()
    out = {}
    for k in feeds[0]:
        ax = axes.get(k)
        if ax is None or feeds[0][k].ndim <= ax:
            if any(not np.array_equal(f[k], feeds[0][k]) for f in feeds[1:]):
                raise DataError(f"input {k!r} has no batch axis but differs between samples; give samples that share it, or --batch 1")
            out[k] = feeds[0][k]
        else:
            out[k] = np.concatenate([f[k] for f in feeds], axis=ax)
    feeds.clear()
    return out


def add_batch_axis(feed: Feed, inputs: Sequence[ModelInput]) -> Feed:
    """A sample stored without its batch dimension gets one, at the input's batch axis."""
    for inp in inputs:
        a = feed.get(inp.name)
        if a is not None and inp.batch_axis is not None and np.ndim(a) == len(inp.shape) - 1:
            feed[inp.name] = np.expand_dims(a, inp.batch_axis)
    return feed


class SampleKeeper:
    """Keeps the ``k`` samples with the smallest content digests among the feeds it watches: a
    subset chosen by the samples alone, so it is the same whatever their order, batching or split
    into files (taking the first ``k`` made quantized models depend on how the data was laid out)."""

    def __init__(self, k: int, inputs: Sequence[ModelInput] | None = None):
        self.k = k
        self.inputs = inputs  # their batch axes (None: axis 0)
        self.seen = 0
        self._kept: dict[bytes, Feed] = {}  # digest -> one sample (batch dimension of 1)

    def watch(self, source: FeedSource) -> "_Watched":
        """``source``, unchanged, observed as it is read (its ``len()`` kept for progress bars)."""
        if self.inputs is None:
            self.inputs = getattr(source, "inputs", None)  # where each input keeps its batch
        return _Watched(source, self)

    def add(self, feed: Mapping[str, np.ndarray]) -> None:
        axes = _axes(feed, self.inputs)
        n = batch_size_of(feed, self.inputs) if feed else 0
        for i in range(n):
            sample = _slice(feed, axes, i, i + 1)
            h = hashlib.blake2b(digest_size=16)
            for name in sorted(sample):
                a = np.ascontiguousarray(sample[name])
                h.update(f"{name}\0{a.dtype}\0{a.shape}\0".encode())
                h.update(a.tobytes())
            d = h.digest()
            self.seen += 1
            if d in self._kept or (len(self._kept) >= self.k and d > max(self._kept)):
                continue
            self._kept[d] = {name: np.array(a) for name, a in sample.items()}
            if len(self._kept) > self.k:
                del self._kept[max(self._kept)]

    def merge(self, other: "SampleKeeper") -> None:
        """Take in what ``other`` kept from other data (a shard read elsewhere): the ``k`` smallest
        digests of both are those of the data together, so the choice is the same as one pass's."""
        self.seen += other.seen
        if self.inputs is None:
            self.inputs = other.inputs
        for d, sample in other._kept.items():
            if d in self._kept or (len(self._kept) >= self.k and d > max(self._kept)):
                continue
            self._kept[d] = sample
            if len(self._kept) > self.k:
                del self._kept[max(self._kept)]

    def __len__(self) -> int:
        return len(self._kept)

    def feeds(self, batch_size: int | None = None, limit: int | None = None) -> list[Feed]:
        """The kept samples in digest order (the first ``limit``: the same choice as a keeper of
        ``limit``), in batches of ``batch_size`` (None: one batch)."""
        if not self._kept:
            return []
        samples = [self._kept[d] for d in sorted(self._kept)][:limit]
        axes = _axes(samples[0], self.inputs)
        # samples join only where their unbatched inputs (a sample rate) agree: one group per value
        groups: dict[bytes, list[Feed]] = {}
        for sample in samples:
            key = b"".join(np.ascontiguousarray(v).tobytes() for k, v in sorted(sample.items()) if axes.get(k) is None or v.ndim <= axes[k])
            groups.setdefault(key, []).append(sample)
        return [f for group in groups.values() for f in rebatch(ListSource([_join(group, axes)]), batch_size, inputs=self.inputs)]


class _Watched:
    def __init__(self, source: FeedSource, keeper: SampleKeeper):
        self.source, self.keeper = source, keeper

    def __iter__(self) -> Iterator[Feed]:
        for feed in self.source:
            self.keeper.add(feed)
            yield feed

    def __len__(self) -> int:
        return len(self.source)

    def __getattr__(self, name: str):  # num_samples, length_known: as the source says
        return getattr(self.source, name)
