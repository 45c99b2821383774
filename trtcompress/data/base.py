"""Feed sources, model input metadata, and the checks every feed goes through."""
from __future__ import annotations

import dataclasses
import hashlib
import os
from typing import Iterable, Iterator, Mapping, Protocol, Sequence

import numpy as np
import onnx

from ..errors import DataError

__all__ = ["FeedSource", "ListSource", "ModelInput", "model_inputs", "validate_feed", "rebatch", "SampleKeeper"]

Feed = dict[str, np.ndarray]


class FeedSource(Protocol):
    """An iterable of feeds (batch dimension included). ``len()`` is the number of feeds."""

    def __iter__(self) -> Iterator[Feed]: ...

    def __len__(self) -> int: ...


@dataclasses.dataclass(frozen=True)
class ModelInput:
    """An ONNX graph input: ``shape`` holds ``None`` or a name for a dynamic dimension."""

    name: str
    shape: tuple[int | str | None, ...]
    dtype: np.dtype

    def is_dynamic(self) -> bool:
        return any(not isinstance(d, int) for d in self.shape)


def model_inputs(model: onnx.ModelProto | str | os.PathLike) -> list[ModelInput]:
    """The real inputs of a model (graph inputs that are not initialisers)."""
    if not isinstance(model, onnx.ModelProto):
        from ..model_io import load_model

        model = load_model(model, load_external_data=False, check=False)
    inits = {t.name for t in model.graph.initializer}
    out = []
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
        out.append(ModelInput(vi.name, tuple(shape), np.dtype(onnx.helper.tensor_dtype_to_np_dtype(tt.elem_type))))
    return out


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

    Feeds are sliced and joined, never split sample by sample, and a feed that already is one
    batch passes through without a copy: memory holds one batch plus one source feed, whatever
    the files hold. ``batch_size=None`` keeps the source's own feeds (only ``limit`` applies).
    A source with a ``num_samples`` attribute (counted without reading the data) gives ``len()``
    cheaply.
    """

    def __init__(self, source: FeedSource, batch_size: int | None, limit: int | None = None):
        if batch_size is not None and batch_size < 1:
            raise DataError(f"batch size must be at least 1, got {batch_size}")
        self.source, self.batch_size, self.limit = source, batch_size, limit

    @property
    def num_samples(self) -> int | None:
        return getattr(self.source, "num_samples", None)

    def __iter__(self) -> Iterator[Feed]:
        pending: list[Feed] = []
        have, left = 0, self.limit if self.limit is not None else -1
        for feed in self.source:
            n = _batch_of(feed)
            if left >= 0 and n > left:
                feed, n = {k: v[:left] for k, v in feed.items()}, left
            if n:
                if self.batch_size is None:
                    yield feed
                else:
                    pending.append(feed)
                    have += n
                    while have >= self.batch_size:
                        yield _cut(pending, self.batch_size)
                        have -= self.batch_size
            if left >= 0:
                left -= n
                if left == 0:
                    break
        if pending:
            yield _join(pending)

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


def _cut(pending: list[Feed], k: int) -> Feed:
    """Remove the first ``k`` samples from ``pending`` (a list of feeds) and return them as one feed."""
    out: list[Feed] = []
    while k:
        f = pending[0]
        n = _batch_of(f)
        if n <= k:
            out.append(pending.pop(0))
            k -= n
        else:
            out.append({a: v[:k] for a, v in f.items()})
            pending[0] = {a: v[k:] for a, v in f.items()}
            k = 0
    return _join(out)


def _join(feeds: list[Feed]) -> Feed:
    if len(feeds) == 1:
        return feeds.pop()
    out = {k: np.concatenate([f[k] for f in feeds]) for k in feeds[0]}
    feeds.clear()
    return out


def _batch_of(feed: Feed) -> int:
    sizes = {v.shape[0] if v.ndim else 1 for v in feed.values()}
    if len(sizes) != 1:
        raise DataError(f"inputs in one feed have different batch sizes {sorted(sizes)}")
    return sizes.pop()


class SampleKeeper:
    """Keeps the ``k`` samples with the smallest content digests among the feeds it watches: a
    subset chosen by the samples alone, so it is the same whatever their order, batching or split
    into files (taking the first ``k`` made quantized models depend on how the data was laid out)."""

    def __init__(self, k: int):
        self.k = k
        self.seen = 0
        self._kept: dict[bytes, Feed] = {}  # digest -> one sample (batch dimension of 1)

    def watch(self, source: FeedSource) -> "_Watched":
        """``source``, unchanged, observed as it is read (its ``len()`` kept for progress bars)."""
        return _Watched(source, self)

    def add(self, feed: Mapping[str, np.ndarray]) -> None:
        n = next(iter(feed.values())).shape[0] if feed else 0
        for i in range(n):
            h = hashlib.blake2b(digest_size=16)
            for name in sorted(feed):
                a = np.ascontiguousarray(feed[name][i])
                h.update(f"{name}\0{a.dtype}\0{a.shape}\0".encode())
                h.update(a.tobytes())
            d = h.digest()
            self.seen += 1
            if d in self._kept or (len(self._kept) >= self.k and d > max(self._kept)):
                continue
            self._kept[d] = {name: np.array(a[i : i + 1]) for name, a in feed.items()}
            if len(self._kept) > self.k:
                del self._kept[max(self._kept)]

    def feeds(self, batch_size: int | None = None) -> list[Feed]:
        """The kept samples in digest order, in batches of ``batch_size`` (None: one batch)."""
        if not self._kept:
            return []
        samples = [self._kept[d] for d in sorted(self._kept)]
        whole = {name: np.concatenate([s[name] for s in samples]) for name in samples[0]}
        return list(rebatch(ListSource([whole]), batch_size))


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
