"""Feed sources, model input metadata, and the checks every feed goes through."""
from __future__ import annotations

import dataclasses
import os
from typing import Iterable, Iterator, Mapping, Protocol, Sequence

import numpy as np
import onnx

from ..errors import DataError

__all__ = ["FeedSource", "ListSource", "ModelInput", "model_inputs", "validate_feed", "rebatch"]

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
    """Regroup a source's feeds into batches of ``batch_size`` along axis 0 (last one may be short)."""

    def __init__(self, source: FeedSource, batch_size: int):
        if batch_size < 1:
            raise DataError(f"batch size must be at least 1, got {batch_size}")
        self.source, self.batch_size = source, batch_size
        self._n = None

    def __iter__(self) -> Iterator[Feed]:
        buf: dict[str, list[np.ndarray]] = {}
        count = 0
        for feed in self.source:
            for i in range(_batch_of(feed)):
                for k, v in feed.items():
                    buf.setdefault(k, []).append(v[i : i + 1])
                count += 1
                if count == self.batch_size:
                    yield {k: np.concatenate(v) for k, v in buf.items()}
                    buf, count = {}, 0
        if count:
            yield {k: np.concatenate(v) for k, v in buf.items()}

    def __len__(self) -> int:
        if self._n is None:
            self._n = sum(1 for _ in self)
        return self._n


def _batch_of(feed: Feed) -> int:
    sizes = {v.shape[0] if v.ndim else 1 for v in feed.values()}
    if len(sizes) != 1:
        raise DataError(f"inputs in one feed have different batch sizes {sorted(sizes)}")
    return sizes.pop()
