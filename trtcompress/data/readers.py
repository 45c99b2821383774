"""Data readers, registered by kind and opened from a spec string.

Specs: ``random`` or ``random:N`` (N batches within the input shapes), a directory or file of
``.npz``/``.npy`` data, or an image folder (used with a :class:`PreprocessConfig`). Later readers
(a Python module, a torch DataLoader) register themselves the same way.
"""
from __future__ import annotations

import dataclasses
import functools
import importlib
import zipfile
from pathlib import Path
from typing import Callable, Iterator, Sequence

import numpy as np

from ..errors import ConfigError, DataError
from .base import Feed, ModelInput, add_batch_axis, rebatch, validate_feed, with_batch_axes
from .values import DEFAULT_HIGH, IntValues
from .preprocess import IMAGE_SUFFIXES, PreprocessConfig

__all__ = ["ReaderOptions", "open_source", "register_reader", "registered_readers"]


@dataclasses.dataclass(frozen=True)
class ReaderOptions:
    batch_size: int | None = None  # samples per feed; None: as stored (a file, a photo's views, a yielded feed)
    limit: int | None = None  # at most this many samples
    seed: int = 0
    preprocess: PreprocessConfig | None = None
    batches: int = 8  # for random data: how many batches
    shapes: dict[str, tuple[int, ...]] | None = None  # concrete shapes for dynamic inputs (random data)
    batch_axes: dict[str, int | None] | None = None  # the user's batch axis per input (--input state:2xNx128)
    int_high: int = DEFAULT_HIGH  # random integers whose range the graph does not tell: [0, int_high)


# arrays under these names in an .npz file are labels for evaluation, not model inputs
LABEL_KEYS = frozenset({"labels", "label"})

Reader = Callable[[str, Sequence[ModelInput], ReaderOptions], "Source"]
_READERS: dict[str, tuple[Reader, Callable[[str], bool]]] = {}
_BARE: set[str] = set()  # kinds whose name alone is a whole spec ("random", "photos")
# readers defined in modules with heavier imports register on first use of their kind
_LAZY = {"photos": "trtcompress.zoo.photos", "stamps": "trtcompress.zoo.stamps"}


def register_reader(kind: str, detect: Callable[[str], bool] = lambda spec: False, bare: bool = False):
    """Register a reader for ``kind:LOCATION`` specs; ``detect`` claims a bare spec; ``bare``: the
    kind alone is a spec too (its reader gets an empty location)."""

    def deco(fn: Reader) -> Reader:
        _READERS[kind] = (fn, detect)
        if bare:
            _BARE.add(kind)
        return fn

    return deco


def registered_readers() -> list[str]:
    return sorted(set(_READERS) | set(_LAZY))


def open_source(spec: str, inputs: Sequence[ModelInput], options: ReaderOptions | None = None) -> "Source":
    """Open a data source from ``spec`` for a model with ``inputs``."""
    options = options or ReaderOptions()
    inputs = with_batch_axes(inputs, options.batch_axes)
    kind, _, rest = spec.partition(":")
    if kind in _LAZY and kind not in _READERS:
        importlib.import_module(_LAZY[kind])
    if kind in _READERS and (rest or kind in _BARE) and not Path(spec).exists():
        return _READERS[kind][0](rest, inputs, options)
    for k, (fn, detect) in _READERS.items():
        if detect(spec):
            return fn(spec, inputs, options)
    if not Path(spec).exists():
        raise DataError(f"data not found: {spec}; give a directory of .npz/.npy files, an image folder, or 'random'")
    if Path(spec).is_dir():
        found = sorted(f.name for f in Path(spec).iterdir())
        held = f"only {', '.join(found[:3])}{' ...' if len(found) > 3 else ''}" if found else "nothing"
        raise DataError(f"{spec} holds no .npz/.npy files or images ({held}); put the data there, or give its kind (e.g. npz:{spec})")
    raise DataError(f"cannot tell what kind of data {spec} holds; prefix it with one of {', '.join(_READERS)} (e.g. npz:{spec})")


class Source:
    """A lazily read source: one feed per item (a file, a photo), validated against the model as
    it is read. ``count(item)`` gives an item's number of samples without reading its data."""

    def __init__(self, items: list, make: Callable[[object], Feed], inputs: Sequence[ModelInput], name: Callable[[object], str], count: Callable[[object], int] | None = None):
        self.items, self.make, self.inputs, self.name, self.count = items, make, list(inputs), name, count

    def __len__(self) -> int:
        return len(self.items)

    def __iter__(self) -> Iterator[Feed]:
        for it in self.items:
            yield validate_feed(self.make(it), self.inputs, self.name(it))

    @functools.cached_property
    def num_samples(self) -> int | None:
        return None if self.count is None else sum(self.count(it) for it in self.items)


def batched(source: Source, options: ReaderOptions) -> rebatch:
    """``source`` in batches of ``options.batch_size`` samples, at most ``options.limit`` samples."""
    return rebatch(source, options.batch_size, options.limit)


# -- random ---------------------------------------------------------------------------------------


@register_reader("random", detect=lambda s: s == "random" or s.startswith("random:"), bare=True)
def _random(spec: str, inputs: Sequence[ModelInput], options: ReaderOptions) -> Source:
    spec = spec.removeprefix("random").lstrip(":")
    batches = options.batches
    if spec:
        try:
            batches = int(spec)
        except ValueError:
            raise ConfigError(f"random data takes a batch count, e.g. random:8 (got {spec!r})") from None
    unknown = sorted(set(options.shapes or ()) - {i.name for i in inputs})
    if unknown:
        raise ConfigError(f"--input names {', '.join(unknown)}, which the model does not take; its inputs are {', '.join(i.name for i in inputs)}")
    shapes = {}
    for inp in inputs:
        given = (options.shapes or {}).get(inp.name)
        dims = list(given) if given else [d if isinstance(d, int) else None for d in inp.shape]
        ax = inp.batch_axis
        # the batch size goes where the batch is dynamic, or where the user gave a shape
        if ax is not None and ax < len(dims) and ((options.batch_size and given) or not isinstance(inp.shape[ax], int)):
            dims[ax] = options.batch_size or dims[ax] or 1
        if any(d is None for d in dims):
            example = "x".join(str(d) if d is not None else ("1" if i == ax else "<size>") for i, d in enumerate(dims))
            raise DataError(f"input {inp.name!r} has dynamic dimensions {list(inp.shape)}; give its shape, e.g. --input {inp.name}:{example}")
        shapes[inp.name] = tuple(dims)

    def make(i: int) -> Feed:
        rng = np.random.default_rng([options.seed, i])
        feed = {}
        for inp in inputs:
            shape = shapes[inp.name]
            if inp.dtype.kind == "f":
                feed[inp.name] = rng.standard_normal(shape, dtype=np.float32).astype(inp.dtype)
            elif inp.dtype.kind == "b":
                feed[inp.name] = rng.integers(0, 2, shape).astype(bool)
            else:
                values = inp.values if inp.values is not None and inp.values.why != "default" else IntValues(0, options.int_high)
                feed[inp.name] = values.sample(rng, shape, inp.dtype)
        return feed

    return Source(list(range(batches)), make, inputs, lambda i: f"random batch {i}")


# -- npz / npy ------------------------------------------------------------------------------------


def _is_array_data(spec: str) -> bool:
    p = Path(spec)
    if p.is_file():
        return p.suffix in (".npz", ".npy")
    return p.is_dir() and any(f.suffix in (".npz", ".npy") for f in p.iterdir())


@register_reader("npz", detect=_is_array_data)
def _npz(spec: str, inputs: Sequence[ModelInput], options: ReaderOptions) -> Source:
    p = Path(spec)
    if not p.exists():
        raise DataError(f"data not found: {p}")
    files = [p] if p.is_file() else sorted(f for f in p.iterdir() if f.suffix in (".npz", ".npy"))
    if not files:
        raise DataError(f"{p} holds no .npz or .npy files")
    names = [i.name for i in inputs]

    def make(f: Path) -> Feed:
        try:
            if f.suffix == ".npy":
                if len(inputs) != 1:
                    raise DataError(f"{f}: a .npy file feeds a single-input model; this model has inputs {', '.join(names)}: use .npz with one array per input")
                feed = {names[0]: np.load(f, allow_pickle=False)}
            else:
                with np.load(f, allow_pickle=False) as z:
                    feed = {k: z[k] for k in z.files if k not in LABEL_KEYS or k in names}
                if len(inputs) == 1 and list(feed) == ["arr_0"]:
                    feed = {names[0]: feed["arr_0"]}
        except DataError:
            raise
        except Exception as e:
            raise DataError(f"{f}: not a readable numpy file ({type(e).__name__}: {e}); re-save it with numpy.save or numpy.savez (plain arrays, no pickled objects)") from e
        return add_batch_axis(feed, inputs)

    batched_inputs = [i for i in inputs if i.batch_axis is not None]

    def count(f: Path) -> int:
        if not batched_inputs:
            return 1
        first = batched_inputs[0]
        shape = _stored_shape(f, first.name)
        if len(shape) == len(first.shape) - 1:
            return 1
        return shape[first.batch_axis] if len(shape) > first.batch_axis else 1

    return batched(Source(files, make, inputs, str, count), options)


def _stored_shape(f: Path, name: str) -> tuple[int, ...]:
    """Shape of an array in an .npy/.npz file, read from its header (no data is read)."""
    try:
        if f.suffix == ".npy":
            with open(f, "rb") as fh:
                return _header_shape(fh)
        with zipfile.ZipFile(f) as z:
            members = [m.removesuffix(".npy") for m in z.namelist()]
            member = name if name in members else next(m for m in members if m not in LABEL_KEYS)
            with z.open(member + ".npy") as fh:
                return _header_shape(fh)
    except Exception as e:
        raise DataError(f"{f}: not a readable numpy file ({type(e).__name__}: {e}); re-save it with numpy.save or numpy.savez") from e


def _header_shape(fh) -> tuple[int, ...]:
    fmt = np.lib.format
    version = fmt.read_magic(fh)
    return (fmt.read_array_header_1_0 if version == (1, 0) else fmt.read_array_header_2_0)(fh)[0]


# -- image folder ---------------------------------------------------------------------------------


def _is_image_dir(spec: str) -> bool:
    p = Path(spec)
    return p.is_dir() and any(_is_image(f) for f in p.iterdir())


def _is_image(f: Path) -> bool:
    name = f.name.lower().removesuffix(".gz")
    return f.is_file() and name.endswith(IMAGE_SUFFIXES)


@register_reader("images", detect=_is_image_dir)
def _images(spec: str, inputs: Sequence[ModelInput], options: ReaderOptions) -> Source:
    p = Path(spec)
    if not p.is_dir():
        raise DataError(f"image folder not found: {p}")
    if len(inputs) != 1:
        raise DataError(f"an image folder feeds a single-input model; this model has {len(inputs)} inputs: use .npz files")
    if options.preprocess is None:
        raise ConfigError(f"{p} is an image folder: give a preprocessing spec, e.g. --preprocess efficientnet-lite or --preprocess resize=256,crop=224,mean=0.5,std=0.5")
    files = sorted(f for f in p.rglob("*") if _is_image(f))
    if not files:
        raise DataError(f"{p} holds no images ({', '.join(IMAGE_SUFFIXES)})")
    name = inputs[0].name
    return batched(Source(files, lambda f: {name: options.preprocess(f)}, inputs, str, lambda f: 1), options)
