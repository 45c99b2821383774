from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pytest

from trtcompress.errors import ConfigError, DataError
from trtcompress.zoo import fashion_mnist
from trtcompress.zoo.fashion_mnist import dataset_dir, _load

needs_data = pytest.mark.skipif(not (dataset_dir() / "t10k-labels-idx1-ubyte.gz").exists() and not (dataset_dir() / "t10k-labels-idx1-ubyte").exists(), reason="apt-get install dataset-fashion-mnist")


@needs_data
@pytest.mark.parametrize("split,count", [("train", 60000), ("test", 10000)])
def test_shapes_dtypes_ranges(split: str, count: int) -> None:
    x, y = fashion_mnist(split)
    assert x.shape == (count, 1, 28, 28) and x.dtype == np.float32
    assert y.shape == (count,) and y.dtype == np.int64
    assert 0.0 <= x.min() and x.max() <= 1.0 and x.max() == 1.0
    assert set(np.unique(y)) == set(range(10))
    assert np.bincount(y).min() == count // 10  # Fashion-MNIST is exactly balanced


@needs_data
def test_limit_keeps_file_order() -> None:
    x, y = fashion_mnist("test", limit=5)
    full_x, full_y = fashion_mnist("test")
    assert x.shape[0] == 5 and np.array_equal(x, full_x[:5]) and np.array_equal(y, full_y[:5])


def test_bad_split() -> None:
    with pytest.raises(ConfigError, match="train.*test"):
        fashion_mnist("validation")


def test_missing_dataset_names_apt_package(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("TRTCOMPRESS_FASHION_MNIST", str(tmp_path / "nowhere"))
    with pytest.raises(DataError, match="apt-get install dataset-fashion-mnist") as info:
        fashion_mnist("test")
    assert "\n" not in str(info.value)


def _idx_bytes(array: np.ndarray) -> bytes:
    header = bytes([0, 0, 8, array.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    return header + array.astype(np.uint8).tobytes()


def _write_idx(path: Path, array: np.ndarray) -> None:
    path.write_bytes(gzip.compress(_idx_bytes(array)))


def test_reads_idx_files_plain_and_gzip(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (7, 28, 28), dtype=np.uint8)
    labels = rng.integers(0, 10, 7, dtype=np.uint8)
    _write_idx(tmp_path / "t10k-images-idx3-ubyte.gz", images)
    (tmp_path / "t10k-labels-idx1-ubyte").write_bytes(_idx_bytes(labels))  # not gzipped
    monkeypatch.setenv("TRTCOMPRESS_FASHION_MNIST", str(tmp_path))
    x, y = fashion_mnist("test")
    assert np.array_equal(x[:, 0], images.astype(np.float32) / 255) and np.array_equal(y, labels)


def test_truncated_file_is_a_data_error(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    images = np.zeros((3, 28, 28), np.uint8)
    _write_idx(tmp_path / "t10k-images-idx3-ubyte.gz", images)
    (tmp_path / "t10k-images-idx3-ubyte.gz").write_bytes(gzip.compress(_idx_bytes(images)[:-10]))
    _write_idx(tmp_path / "t10k-labels-idx1-ubyte.gz", np.zeros(3, np.uint8))
    monkeypatch.setenv("TRTCOMPRESS_FASHION_MNIST", str(tmp_path))
    _load.cache_clear()
    with pytest.raises(DataError, match="header says"):
        fashion_mnist("test")
