from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from trtcompress.data import ModelInput, PreprocessConfig, model_inputs, open_source, rebatch, validate_feed
from trtcompress.data.readers import ReaderOptions
from trtcompress.errors import ConfigError, DataError

INPUTS = [ModelInput("x", (None, 3, 16, 16), np.dtype(np.float32))]


def test_model_inputs(tiny_model):
    (inp,) = model_inputs(tiny_model)
    assert inp.name == "x" and inp.shape == ("N", 3, 16, 16) and inp.is_dynamic()


def test_npz_dir_reader_adds_batch_dim_and_batches(tmp_path):
    rng = np.random.default_rng(0)
    for i in range(5):
        np.savez(tmp_path / f"s{i}.npz", x=rng.standard_normal((3, 16, 16)).astype(np.float32))
    src = open_source(str(tmp_path), INPUTS, ReaderOptions(batch_size=2))
    feeds = list(src)
    assert len(src) == 3 and [f["x"].shape[0] for f in feeds] == [2, 2, 1]


def test_batches_count_samples_across_files(tmp_path, monkeypatch):
    # files of 5 and 3 samples: batches are exact sample counts, split and joined across files,
    # the limit counts samples, and len() comes from the file headers, not the data
    rng = np.random.default_rng(1)
    x = rng.standard_normal((8, 3, 16, 16)).astype(np.float32)
    np.savez(tmp_path / "a.npz", x=x[:5], labels=np.arange(5))
    np.save(tmp_path / "b.npy", x[5:])
    src = open_source(str(tmp_path), INPUTS, ReaderOptions(batch_size=3))
    monkeypatch.setattr(np, "load", None)  # len() must not read arrays
    assert len(src) == 3
    monkeypatch.undo()
    feeds = list(src)
    assert [f["x"].shape[0] for f in feeds] == [3, 3, 2]
    np.testing.assert_array_equal(np.concatenate([f["x"] for f in feeds]), x)
    limited = list(open_source(str(tmp_path), INPUTS, ReaderOptions(batch_size=4, limit=6)))
    assert [f["x"].shape[0] for f in limited] == [4, 2]
    np.testing.assert_array_equal(np.concatenate([f["x"] for f in limited]), x[:6])
    as_stored = list(open_source(str(tmp_path), INPUTS))
    assert [f["x"].shape[0] for f in as_stored] == [5, 3]


def test_npy_single_input(tmp_path):
    np.save(tmp_path / "a.npy", np.zeros((4, 3, 16, 16), np.float32))
    (feed,) = list(open_source(str(tmp_path / "a.npy"), INPUTS))
    assert feed["x"].shape == (4, 3, 16, 16)


@pytest.mark.parametrize(
    "array, match",
    [
        (np.full((1, 3, 16, 16), np.nan, np.float32), "NaN"),
        (np.full((1, 3, 16, 16), np.inf, np.float32), "Inf"),
        (np.zeros((1, 3, 8, 8), np.float32), "dimension 2 differs"),
        (np.zeros((1, 3), np.float32), "rank"),
        (np.zeros((1, 3, 16, 16), np.int64), "dtype"),
    ],
)
def test_bad_samples_are_named(tmp_path, array, match):
    np.savez(tmp_path / "ok.npz", x=np.zeros((1, 3, 16, 16), np.float32))
    np.savez(tmp_path / "zbad.npz", x=array)
    with pytest.raises(DataError, match=match) as e:
        list(open_source(str(tmp_path), INPUTS))
    assert "zbad.npz" in str(e.value)


def test_wrong_input_name(tmp_path):
    np.savez(tmp_path / "a.npz", y=np.zeros((1, 3, 16, 16), np.float32))
    with pytest.raises(DataError, match="missing input"):
        list(open_source(str(tmp_path), INPUTS))


def test_random_is_deterministic_and_needs_shapes():
    a = [f["x"] for f in open_source("random:2", INPUTS, ReaderOptions(batch_size=3, seed=5))]
    b = [f["x"] for f in open_source("random:2", INPUTS, ReaderOptions(batch_size=3, seed=5))]
    assert all(np.array_equal(x, y) for x, y in zip(a, b)) and a[0].shape == (3, 3, 16, 16)
    dyn = [ModelInput("ids", (None, None), np.dtype(np.int64))]
    with pytest.raises(DataError, match="dynamic"):
        open_source("random", dyn)
    (f,) = list(open_source("random:1", dyn, ReaderOptions(shapes={"ids": (2, 7)})))
    assert f["ids"].shape == (2, 7) and f["ids"].dtype == np.int64


def test_image_folder_with_preprocessing(tmp_path):
    rng = np.random.default_rng(0)
    for i in range(3):
        Image.fromarray(rng.integers(0, 255, (40, 60, 3), dtype=np.uint8)).save(tmp_path / f"{i}.png")
    (tmp_path / "notes.txt").write_text("not an image")
    pre = PreprocessConfig.parse("resize=20,crop=16,mean=0.5,std=0.5")
    feeds = list(open_source(str(tmp_path), INPUTS, ReaderOptions(batch_size=2, preprocess=pre)))
    assert [f["x"].shape for f in feeds] == [(2, 3, 16, 16), (1, 3, 16, 16)]
    assert feeds[0]["x"].min() >= -1.0 and feeds[0]["x"].max() <= 1.0
    with pytest.raises(ConfigError, match="preprocessing"):
        open_source(str(tmp_path), INPUTS)


def test_preprocess_matches_manual_computation(tmp_path):
    img = np.random.default_rng(1).integers(0, 255, (16, 16, 3), dtype=np.uint8)
    Image.fromarray(img).save(tmp_path / "a.png")
    pre = PreprocessConfig.parse("resize=0,crop=0,mean=0.5,std=0.5,order=BGR,layout=NHWC")
    out = pre(tmp_path / "a.png")
    np.testing.assert_allclose(out[0], (img[:, :, ::-1] / 255.0 - 0.5) / 0.5, atol=1e-6)


def test_unreadable_image_is_named(tmp_path):
    (tmp_path / "broken.jpg").write_bytes(b"not a jpeg")
    with pytest.raises(DataError, match="broken.jpg"):
        list(open_source(str(tmp_path), INPUTS, ReaderOptions(preprocess=PreprocessConfig())))


def test_missing_data():
    with pytest.raises(DataError, match="not found"):
        open_source("/no/such/dir", INPUTS)


def test_rebatch():
    feeds = [{"x": np.full((1, 2), i, np.float32)} for i in range(5)]
    out = list(rebatch(feeds, 2))
    assert [f["x"].shape[0] for f in out] == [2, 2, 1] and out[1]["x"][0, 0] == 2


def test_validate_feed_casts_same_kind():
    f = validate_feed({"x": np.zeros((1, 3, 16, 16), np.float64)}, INPUTS, "s")
    assert f["x"].dtype == np.float32


def test_labels_in_npz_are_not_inputs(tmp_path):
    np.savez(tmp_path / "eval.npz", x=np.zeros((4, 3, 16, 16), np.float32), labels=np.arange(4))
    (feed,) = list(open_source(str(tmp_path / "eval.npz"), INPUTS))
    assert list(feed) == ["x"]
