"""Training data for fine-tuning: a user's factory, or a built-in labelled dataset.

Every source yields ``(inputs, labels)`` batches of torch tensors. The trainer seeds torch's
global generator before each epoch, so a shuffling DataLoader (or a built-in dataset) gives the
same order for the same seed and epoch: that is what makes resume exact.
"""
from __future__ import annotations

from typing import Any, Callable, Iterable, Iterator

import numpy as np

from .._optional import require
from ..errors import ConfigError, DataError
from ..userref import is_reference as is_factory_spec, load_callable

__all__ = ["TrainData", "ArrayBatches", "open_training_data", "register_dataset", "registered_datasets"]

_DATASETS: dict[str, Callable[[str, int | None], tuple[np.ndarray, np.ndarray]]] = {}


def register_dataset(name: str):
    """Register ``fn(split, limit) -> (images float32 [N, ...], labels int64 [N])``."""

    def deco(fn):
        _DATASETS[name] = fn
        return fn

    return deco


def registered_datasets() -> list[str]:
    return sorted(_DATASETS)


@register_dataset("fashion-mnist")
def _fashion(split: str, limit: int | None):
    from ..zoo import fashion_mnist

    return fashion_mnist(split, limit)


@register_dataset("digits")
def _digits(split: str, limit: int | None):
    """scikit-learn's 8x8 digits (1797 samples), split 1400 train / 397 test by a fixed shuffle."""
    datasets = require("sklearn.datasets", "the digits dataset")
    d = datasets.load_digits()
    order = np.random.default_rng(0).permutation(len(d.target))
    idx = order[:1400] if split == "train" else order[1400:]
    if split not in ("train", "test"):
        raise ConfigError(f"digits split must be 'train' or 'test', got {split!r}")
    x = (d.images[idx] / 16.0).astype(np.float32)[:, None]
    y = d.target[idx].astype(np.int64)
    return (x[:limit], y[:limit]) if limit else (x, y)


class ArrayBatches:
    """Shuffled mini-batches over arrays held in memory (shuffled with torch's global generator)."""

    def __init__(self, x: np.ndarray, y: np.ndarray, batch_size: int, shuffle: bool = True):
        torch = require("torch", "fine-tuning")
        self.x, self.y = torch.as_tensor(np.ascontiguousarray(x)), torch.as_tensor(np.ascontiguousarray(y))
        self.batch_size, self.shuffle = batch_size, shuffle

    def __len__(self) -> int:
        return -(-len(self.y) // self.batch_size)

    def _batches(self):
        torch = require("torch", "fine-tuning")
        order = torch.randperm(len(self.y)) if self.shuffle else torch.arange(len(self.y))
        for start in range(0, len(order), self.batch_size):
            yield order[start : start + self.batch_size]

    def __iter__(self) -> Iterator[tuple[Any, Any]]:
        for idx in self._batches():
            yield self.x[idx], self.y[idx]

    def sharded(self, replica) -> Iterator[tuple[Any, Any, float]]:
        """A data-parallel worker's share of every batch (trtcompress.finetune.parallel): the same
        order, only its samples gathered."""
        for idx in self._batches():
            a, b, w = replica.part(len(idx))
            yield self.x[idx[a:b]], self.y[idx[a:b]], w


class TrainData:
    """A re-iterable source of ``(inputs, labels)`` batches built from a factory.

    A factory that returns a re-iterable object (a DataLoader, a list) is called once; one that
    returns a one-shot iterator (a generator) is called again for every epoch.
    """

    def __init__(self, make: Callable[[], Iterable], name: str):
        self.make, self.name = make, name
        self._obj = None

    def __iter__(self) -> Iterator[tuple[Any, Any]]:
        obj = self._obj if self._obj is not None else self.make()
        if obj is None or not hasattr(obj, "__iter__"):
            raise DataError(f"training data {self.name}: the factory returned {type(obj).__name__}, not an iterable of (inputs, labels)")
        if iter(obj) is not obj:  # re-iterable: keep it
            self._obj = obj
        for i, batch in enumerate(obj):
            yield _check_batch(batch, self.name, i)

    def sharded(self, replica) -> Iterator[tuple[Any, Any, float]]:
        """A data-parallel worker's share of every batch: from the factory's object where it can
        shard itself (a built-in dataset), else sliced from each whole batch."""
        obj = self._obj if self._obj is not None else self.make()
        if iter(obj) is not obj:
            self._obj = obj
        if hasattr(obj, "sharded"):
            for i, (x, y, w) in enumerate(obj.sharded(replica)):
                yield (*_check_batch((x, y), self.name, i), w)
        else:
            for i, batch in enumerate(obj):
                yield replica.split(*_check_batch(batch, self.name, i))

    def __len__(self) -> int:
        obj = self._obj if self._obj is not None else self.make()
        if iter(obj) is not obj:
            self._obj = obj
        try:
            return len(obj)
        except TypeError:
            raise TypeError("length unknown") from None


def _check_batch(batch: Any, name: str, i: int):
    torch = require("torch", "fine-tuning")
    if not isinstance(batch, (tuple, list)) or len(batch) != 2:
        raise DataError(f"training data {name}: batch {i} is {type(batch).__name__}, expected an (inputs, labels) pair")
    x, y = batch
    if not torch.is_tensor(x) or not torch.is_tensor(y):
        raise DataError(f"training data {name}: batch {i} holds {type(x).__name__}/{type(y).__name__}; give torch tensors")
    if y.dtype not in (torch.int64, torch.int32, torch.uint8) or y.ndim != 1:
        raise DataError(f"training data {name}: labels of batch {i} are {y.dtype} with shape {list(y.shape)}; give class indices, int64 [N]")
    if len(y) != len(x):
        raise DataError(f"training data {name}: batch {i} has {len(x)} inputs and {len(y)} labels")
    if x.is_floating_point() and not torch.isfinite(x).all():
        raise DataError(f"training data {name}: inputs of batch {i} contain NaN or Inf")
    return x, y.long()


def open_training_data(spec: str, batch_size: int = 64, split: str = "train", shuffle: bool = True) -> TrainData:
    """``NAME[:SPLIT[:LIMIT]]`` for a built-in dataset (``fashion-mnist``, ``digits``), or a factory
    ``file.py:function`` / ``package.module:function`` returning (inputs, labels) batches."""
    name, _, rest = spec.partition(":")
    if name in _DATASETS:
        parts = rest.split(":") if rest else []
        sp = parts[0] if parts and parts[0] else split
        limit = None
        if len(parts) > 1:
            try:
                limit = int(parts[1])
            except ValueError:
                raise ConfigError(f"dataset spec {spec!r}: the limit must be an integer, e.g. {name}:train:5000") from None
        x, y = _DATASETS[name](sp, limit)
        batches = ArrayBatches(x, y, batch_size, shuffle)
        return TrainData(lambda: batches, f"{name}:{sp}")
    if is_factory_spec(spec):
        fn = load_callable(spec, "training data factory")
        return TrainData(fn, spec)
    raise ConfigError(f"training data {spec!r} is neither a built-in dataset ({', '.join(registered_datasets())}) nor a factory path/file.py:function or package.module:function")
