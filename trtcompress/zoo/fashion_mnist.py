"""Fashion-MNIST read from the Debian package ``dataset-fashion-mnist`` (IDX files, gzip).

The data never comes from the network: the package installs it under
``/usr/share/datasets/fashion-mnist``.
"""
from __future__ import annotations

import gzip
import os
from functools import lru_cache
from pathlib import Path

import numpy as np

from ..errors import ConfigError, DataError

__all__ = ["fashion_mnist", "FASHION_MNIST_DIR", "CLASSES", "dataset_dir"]

FASHION_MNIST_DIR = Path("/usr/share/datasets/fashion-mnist")
# the environment variable lets a user point at a copy elsewhere
_ENV = "TRTCOMPRESS_FASHION_MNIST"

CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot")

_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}


def dataset_dir() -> Path:
    """Where the IDX files are looked for (``$TRTCOMPRESS_FASHION_MNIST`` or the Debian path)."""
    return Path(os.environ.get(_ENV) or FASHION_MNIST_DIR)


def fashion_mnist(split: str = "train", limit: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Images ``float32 [N, 1, 28, 28]`` in [0, 1] and labels ``int64 [N]`` of ``split``.

    ``limit`` keeps the first N samples (the order of the files, deterministic).
    """
    if split not in _FILES:
        raise ConfigError(f"Fashion-MNIST split must be 'train' or 'test', got {split!r}")
    images, labels = _load(str(dataset_dir()), split)
    if limit is not None:
        images, labels = images[:limit], labels[:limit]
    return images.astype(np.float32) / np.float32(255.0), labels.astype(np.int64)


@lru_cache(maxsize=4)
def _load(root: str, split: str) -> tuple[np.ndarray, np.ndarray]:
    img_name, lbl_name = _FILES[split]
    images = _read_idx(_find(Path(root), img_name))
    labels = _read_idx(_find(Path(root), lbl_name))
    if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels):
        raise DataError(f"Fashion-MNIST {split} files in {root} disagree: images {images.shape}, labels {labels.shape}; reinstall: apt-get install --reinstall dataset-fashion-mnist")
    images.setflags(write=False)
    labels.setflags(write=False)
    return images[:, None], labels


def _find(root: Path, name: str) -> Path:
    for candidate in (root / f"{name}.gz", root / name):
        if candidate.is_file():
            return candidate
    raise DataError(f"Fashion-MNIST file {name}[.gz] not found in {root}; install it: apt-get install dataset-fashion-mnist")


def _read_idx(path: Path) -> np.ndarray:
    """Read an IDX file (magic: two zero bytes, dtype code, rank; big-endian dims)."""
    try:
        raw = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    except (OSError, EOFError) as e:
        raise DataError(f"{path}: not a readable IDX file ({e}); reinstall: apt-get install --reinstall dataset-fashion-mnist") from e
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] != 0x08:
        raise DataError(f"{path}: not an unsigned-byte IDX file; reinstall: apt-get install --reinstall dataset-fashion-mnist")
    rank = raw[3]
    dims = tuple(int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(rank))
    start = 4 + 4 * rank
    count = int(np.prod(dims))
    if len(raw) - start != count:
        raise DataError(f"{path}: holds {len(raw) - start} bytes of data, its header says {count}; reinstall: apt-get install --reinstall dataset-fashion-mnist")
    return np.frombuffer(raw, dtype=np.uint8, offset=start).reshape(dims)
