"""Feeds from Python code: a function in a module or file, and a torch DataLoader.

Specs: ``module:path/to/file.py:function`` (a file) and ``pymodule:package.module:function`` (an
importable module). The function takes no arguments and returns (or yields) feeds: dicts
``input name -> array`` (numpy arrays or torch tensors), or for a single-input model plain arrays,
or ``(x, label)``-style tuples whose leading items are the inputs in order. A torch ``DataLoader``
returned by the function works the same way. Every feed is checked against the model
(:func:`~trtcompress.data.base.validate_feed`) with an error naming the sample.
"""
from __future__ import annotations

import inspect
from typing import Any, Callable, Iterable, Iterator, Sequence

import numpy as np

from ..errors import DataError
from ..userref import load_reference
from .base import Feed, ModelInput, add_batch_axis, rebatch, validate_feed
from .readers import ReaderOptions, register_reader

__all__ = ["CallableSource", "from_dataloader", "load_function", "to_feed"]


def to_feed(item: Any, names: Sequence[str], where: str) -> Feed:
    """One produced item -> a feed dict of numpy arrays (tensors converted, labels dropped)."""
    if isinstance(item, dict):
        return {k: _array(v, where, k) for k, v in item.items()}
    if isinstance(item, (tuple, list)):
        if len(item) < len(names):
            raise DataError(f"{where}: got {len(item)} item(s), the model has inputs {', '.join(names)}; yield a dict name -> array")
        # (inputs..., labels...): the leading items are the inputs in model order
        return {n: _array(v, where, n) for n, v in zip(names, item)}
    if len(names) == 1:
        return {names[0]: _array(item, where, names[0])}
    raise DataError(f"{where}: a bare array feeds a single-input model; this model has inputs {', '.join(names)}: yield a dict")


def _array(v: Any, where: str, name: str) -> np.ndarray:
    if hasattr(v, "detach") and hasattr(v, "cpu"):  # a torch tensor (torch is not imported here)
        v = v.detach().cpu().numpy()
    try:
        return np.asarray(v)
    except Exception as e:
        raise DataError(f"{where}: input {name!r} is a {type(v).__name__}, not an array") from e


class CallableSource:
    """Feeds produced by calling ``produce()`` afresh for every pass, validated as they come.

    ``len()`` is the number of feeds; for a generator it is counted by one pass, so tools that
    only show progress read ``length_known`` first.
    """

    def __init__(self, produce: Callable[[], Iterable[Any]], inputs: Sequence[ModelInput] | None, names: Sequence[str], label: str):
        self.produce, self.inputs, self.names, self.label = produce, list(inputs) if inputs else None, list(names), label
        self._len: int | None = None

    @property
    def length_known(self) -> bool:
        if self._len is not None:
            return True
        try:
            self._len = len(self._items())  # type: ignore[arg-type]
        except TypeError:
            return False
        return True

    def _items(self) -> Iterable[Any]:
        try:
            items = self.produce()
        except DataError:
            raise
        except Exception as e:
            raise DataError(f"{self.label} failed: {type(e).__name__}: {e}") from e
        if items is None or isinstance(items, (str, bytes)) or not hasattr(items, "__iter__"):
            raise DataError(f"{self.label} returned {type(items).__name__}, not an iterable of feeds; return or yield dicts input name -> array")
        return items

    def __iter__(self) -> Iterator[Feed]:
        count = 0
        for k, item in enumerate(self._items()):
            where = f"{self.label}, sample {k}"
            feed = to_feed(item, self.names, where)
            if self.inputs is not None:
                feed = validate_feed(add_batch_axis(feed, self.inputs), self.inputs, where)
            count += 1
            yield feed
        self._len = count

    def __len__(self) -> int:
        if self._len is None:
            self._len = sum(1 for _ in self._items())
        return self._len


def load_function(spec: str, from_file: bool) -> Callable[[], Iterable[Any]]:
    """``path/to/file.py:function`` or ``package.module:function`` -> the function (or iterable)."""
    if from_file != spec.rpartition(":")[0].endswith(".py"):
        example = "module:calib/data.py:feeds" if from_file else "pymodule:mypkg.calib:feeds"
        raise DataError(f"give {'a .py file' if from_file else 'a module'} and the function after the last ':', e.g. {example} (got {spec!r})")
    obj = load_reference(spec, "feeds function", DataError)
    target, _, attr = spec.rpartition(":")
    if callable(obj) and not _is_dataloader(obj):
        if any(p.default is p.empty and p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD) for p in inspect.signature(obj).parameters.values()):
            raise DataError(f"{target}:{attr} must be callable without arguments (it yields feeds)")
        return obj
    return lambda: obj  # an iterable defined at module level (a list, a DataLoader)


def _is_dataloader(obj: Any) -> bool:
    return hasattr(obj, "dataset") and hasattr(obj, "batch_size") and hasattr(obj, "__iter__")


def _open(spec: str, inputs: Sequence[ModelInput], options: ReaderOptions, from_file: bool) -> Any:
    fn = load_function(spec, from_file)
    source: Any = CallableSource(fn, inputs, [i.name for i in inputs], spec)
    return rebatch(source, options.batch_size, options.limit, inputs) if options.batch_size or options.limit else source


@register_reader("module", detect=lambda s: s.rpartition(":")[0].endswith(".py"))
def _module_file(spec: str, inputs: Sequence[ModelInput], options: ReaderOptions) -> Any:
    return _open(spec, inputs, options, from_file=True)


@register_reader("pymodule")
def _pymodule(spec: str, inputs: Sequence[ModelInput], options: ReaderOptions) -> Any:
    return _open(spec, inputs, options, from_file=False)


def from_dataloader(loader: Iterable[Any], input_names: Sequence[str] | str, inputs: Sequence[ModelInput] | None = None) -> CallableSource:
    """A feed source over a torch ``DataLoader`` (or any re-iterable of batches).

    Batches may be tensors (single input), tuples/lists whose leading items are the inputs in
    ``input_names`` order (labels after them are dropped), or dicts. With ``inputs`` (from
    :func:`~trtcompress.data.model_inputs`) every batch is checked here; calibration checks
    them against the model in any case.
    """
    names = [input_names] if isinstance(input_names, str) else list(input_names)
    if not names:
        raise DataError("from_dataloader needs the model's input names")
    if inputs is not None:
        missing = [n for n in names if n not in {i.name for i in inputs}]
        if missing:
            raise DataError(f"input name(s) {', '.join(missing)} are not model inputs ({', '.join(i.name for i in inputs)})")
    label = f"DataLoader ({type(loader).__name__})"
    return CallableSource(lambda: loader, inputs, names, label)
