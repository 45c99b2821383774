"""The ready sets in calibration/ are what their README says, readable by the data readers, and
regenerated identically by calibration/make_sets.py."""
from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

from trtcompress.data import PreprocessConfig, model_inputs, open_source
from trtcompress.data.base import ModelInput
from trtcompress.data.readers import ReaderOptions
from trtcompress.zoo import onnx_path
from trtcompress.zoo.fashion_mnist import dataset_dir
from trtcompress.zoo.photos import CATALOGUE

CALIB = Path(__file__).resolve().parents[2] / "calibration"


def _make_sets():
    spec = importlib.util.spec_from_file_location("make_sets", CALIB / "make_sets.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_photo_set_is_the_calib_split_and_small() -> None:
    files = sorted(CALIB.joinpath("photos").iterdir())
    assert {f.name for f in files} == {f"{p.name}.jpg" for p in CATALOGUE if p.split == "calib"}
    assert sum(f.stat().st_size for f in files) < 3_000_000
    assert all(f.read_bytes()[:3] == b"\xff\xd8\xff" for f in files)  # JPEG


def test_photo_set_reads_with_efficientnet_preprocessing() -> None:
    inputs = [ModelInput("x", (None, 3, 224, 224), np.dtype(np.float32))]
    options = ReaderOptions(batch_size=4, limit=8, preprocess=PreprocessConfig.parse("efficientnet-lite"))
    feeds = list(open_source(str(CALIB / "photos"), inputs, options))
    assert [f["x"].shape for f in feeds] == [(4, 3, 224, 224)] * 2
    assert all(-1 <= f["x"].min() and f["x"].max() <= 1 for f in feeds)


def test_fashion_set_reads_and_the_cnn_is_confident_on_it() -> None:
    import onnxruntime as ort

    path = onnx_path("fashion_cnn")
    feeds = list(open_source(str(CALIB / "fashion_mnist"), model_inputs(path), ReaderOptions()))
    assert len(feeds) == 8 and all(f["x"].shape == (64, 1, 28, 28) and f["x"].dtype == np.float32 for f in feeds)
    x = np.concatenate([f["x"] for f in feeds])
    assert len(np.unique(x.reshape(len(x), -1), axis=0)) == 512 and 0 <= x.min() and x.max() <= 1
    logits = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(["logits"], {"x": x})[0]
    e = np.exp(logits - logits.max(1, keepdims=True))
    assert (e.max(1) / e.sum(1)).mean() > 0.8  # real training images, not noise
    assert len(np.unique(logits.argmax(1))) == 10


@pytest.mark.skipif(not (dataset_dir() / "train-images-idx3-ubyte.gz").exists(), reason="apt-get install dataset-fashion-mnist")
def test_make_sets_regenerates_the_fashion_sets(tmp_path: Path) -> None:
    make_sets = _make_sets()
    make_sets.make_fashion(tmp_path / "fashion_mnist")
    make_sets.make_fashion_eval(tmp_path / "eval.npz")
    for shipped in sorted((CALIB / "fashion_mnist").iterdir()):
        with np.load(shipped) as a, np.load(tmp_path / "fashion_mnist" / shipped.name) as b:
            np.testing.assert_array_equal(a["x"], b["x"])
    with np.load(CALIB / "fashion_mnist_eval.npz") as a, np.load(tmp_path / "eval.npz") as b:
        np.testing.assert_array_equal(a["x"], b["x"])
        np.testing.assert_array_equal(a["labels"], b["labels"])
