from __future__ import annotations

import importlib
from pathlib import Path

import numpy as np
import pytest

from trtcompress.data import PreprocessConfig
from trtcompress.errors import ConfigError, DataError
from trtcompress.zoo import PhotoSource, photo_batch, photos
from trtcompress.zoo.photos import CATALOGUE, OPENCV_DATA, SPLITS, augmented_views

photos_module = importlib.import_module("trtcompress.zoo.photos")

all_sources = pytest.mark.skipif(not OPENCV_DATA.is_dir(), reason="apt-get install opencv-doc")


def test_catalogue_splits_share_no_scene_and_no_file() -> None:
    scenes = {s: {p.scene for p in CATALOGUE if p.split == s} for s in SPLITS}
    assert set(SPLITS) == {"calib", "tune", "heldout"} and all(scenes.values())
    for a in SPLITS:
        for b in SPLITS:
            assert a == b or not scenes[a] & scenes[b], (a, b)
    assert len({p.name for p in CATALOGUE}) == len(CATALOGUE)
    assert len({(p.source, p.file) for p in CATALOGUE}) == len(CATALOGUE)


def test_heldout_split_is_large_and_pinned() -> None:
    """At least 40 photos no design choice was tuned on, one per scene, each pinned by checksum."""
    heldout = [p for p in CATALOGUE if p.split == "heldout"]
    assert len(heldout) >= 40 and len({p.scene for p in heldout}) == len(heldout)
    assert all(len(p.sha256) >= 16 for p in heldout)


@all_sources
def test_heldout_files_match_their_checksums() -> None:
    import hashlib

    pairs = photos_module.available_photos("heldout")
    assert len(pairs) == sum(p.split == "heldout" for p in CATALOGUE)
    for photo, path in pairs:
        assert hashlib.sha256(path.read_bytes()).hexdigest().startswith(photo.sha256), photo.name


def test_a_changed_heldout_file_is_refused(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    photo = next(p for p in CATALOGUE if p.split == "heldout")
    fake = tmp_path / "changed.jpg"
    fake.write_bytes(b"not the pinned photo")
    monkeypatch.setitem(photos_module._LOCATORS, photo.source, lambda p: fake)
    with pytest.raises(DataError, match=f"photo {photo.name} .* is not the catalogued file"):
        photos("heldout")


def test_heldout_is_strict_when_a_source_is_missing(monkeypatch: pytest.MonkeyPatch) -> None:
    """A partial heldout set would make its figures incomparable: it is all or an error."""
    monkeypatch.setitem(photos_module._LOCATORS, "skimage", lambda photo: None)
    with pytest.raises(DataError, match="scikit-image"):
        photos("heldout")


def test_eval_is_the_old_name_of_tune() -> None:
    assert [p.name for p, _ in photos_module.available_photos("eval")] == [p.name for p, _ in photos_module.available_photos("tune")]


def test_photo_order_follows_catalogue_names_not_install_paths(monkeypatch) -> None:
    """A venv under /tmp sorts before /usr/share, one under /work after it: the order (and so the
    first samples a calibration analyses) must not depend on that."""
    entries = [p for p in CATALOGUE if p.split == "calib"][:3]
    located = {entries[0].name: Path("/zz/venv/a.png"), entries[1].name: Path("/aa/usr/b.png"), entries[2].name: Path("/mm/c.png")}
    monkeypatch.setattr(photos_module, "CATALOGUE", entries)
    monkeypatch.setattr(photos_module, "_locate", lambda photo: located[photo.name])
    assert photos("calib") == [located[n] for n in sorted(located)]


@all_sources
def test_splits_are_disjoint_real_colour_photos() -> None:
    calib, tune, heldout = photos("calib", strict=True), photos("tune", strict=True), photos("heldout")
    assert len(calib) >= 15 and len(tune) >= 15 and len(heldout) >= 40
    assert len(set(calib) | set(tune) | set(heldout)) == len(calib) + len(tune) + len(heldout)
    assert sorted(calib + tune + heldout) == sorted(photos())
    from PIL import Image

    for path in calib + tune + heldout:
        with Image.open(path) as img:
            rgb = np.asarray(img.convert("RGB"), np.int16)
        assert min(rgb.shape[:2]) >= 180, path  # no thumbnails (the smallest, a tutorial photo, is 300x187)
        # a colour photo: channels differ (grey test images and scans have none of this)
        assert np.abs(rgb[..., 0] - rgb[..., 1]).mean() + np.abs(rgb[..., 1] - rgb[..., 2]).mean() > 5, path


@all_sources
def test_no_pixel_identical_photo_in_both_splits() -> None:
    from PIL import Image

    def thumb(p: Path) -> bytes:
        with Image.open(p) as img:
            return np.asarray(img.convert("L").resize((16, 16))).tobytes()

    thumbs = {s: {thumb(p) for p in photos(s)} for s in SPLITS}
    assert not thumbs["calib"] & thumbs["tune"] and not thumbs["calib"] & thumbs["heldout"] and not thumbs["tune"] & thumbs["heldout"]
    assert len(thumbs["heldout"]) == len(photos("heldout"))  # no duplicate inside the split either


def test_missing_sources_raise_with_install_hint(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(photos_module, "_LOCATORS", {k: (lambda photo: None) for k in photos_module._LOCATORS})
    with pytest.raises(DataError, match="apt-get install opencv-doc"):
        photos("tune")


def test_strict_names_the_missing_source(monkeypatch: pytest.MonkeyPatch) -> None:
    real = photos_module._LOCATORS["opencv"]
    monkeypatch.setitem(photos_module._LOCATORS, "opencv", lambda photo: None)
    found = photos("calib")  # lenient: the scikit-image and scikit-learn photos remain
    assert found and all("opencv-doc" not in str(p) for p in found)
    with pytest.raises(DataError, match="opencv-doc"):
        photos("calib", strict=True)
    assert real is not None


def test_gzip_opencv_photo_is_unpacked_to_cache(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import gzip

    from PIL import Image

    data = tmp_path / "data"
    data.mkdir()
    buf = tmp_path / "x.jpg"
    Image.fromarray(np.full((40, 50, 3), 200, np.uint8)).save(buf)
    (data / "apple.jpg.gz").write_bytes(gzip.compress(buf.read_bytes()))
    monkeypatch.setattr(photos_module, "OPENCV_DATA", data)
    monkeypatch.setenv("TRTCOMPRESS_CACHE", str(tmp_path / "cache"))
    entry = next(p for p in CATALOGUE if p.file == "apple.jpg")
    path = photos_module._opencv(entry)
    assert path == tmp_path / "cache" / "photos" / "apple.jpg"
    assert Image.open(path).size == (50, 40)


def test_bad_split() -> None:
    with pytest.raises(ConfigError):
        photos("train")


def test_augmented_views_are_distinct_and_deterministic() -> None:
    from PIL import Image

    rng = np.random.default_rng(0)
    img = Image.fromarray(rng.integers(0, 256, (60, 80, 3), dtype=np.uint8))
    views = augmented_views(img)
    assert len(views) == 12 and augmented_views(img, augment=False) == [img]
    arrays = [np.asarray(v).tobytes() for v in views]
    assert len(set(arrays)) == 12
    assert arrays == [np.asarray(v).tobytes() for v in augmented_views(img)]


@all_sources
def test_photo_batch_shapes_and_counts() -> None:
    config = PreprocessConfig.parse("efficientnet-lite,resize=72,crop=64")
    batches = list(photo_batch("tune", config, augment=True, batch_size=32, limit=3))
    n = 3 * 12
    assert sum(len(b) for b in batches) == n
    assert all(b.shape[1:] == (3, 64, 64) and b.dtype == np.float32 for b in batches)
    assert -1.0 <= min(b.min() for b in batches) and max(b.max() for b in batches) <= 1.0
    plain = np.concatenate(list(photo_batch("tune", config, augment=False, batch_size=8)))
    assert plain.shape[0] == len(photos("tune"))
    np.testing.assert_array_equal(plain[0], batches[0][0])  # view 0 is the untouched photo
    source = PhotoSource("tune", config, input_name="images", augment=True, batch_size=10, limit=2)
    feeds = list(source)
    assert len(feeds) == len(source) == 3 and set(feeds[0]) == {"images"}
    assert sum(len(f["images"]) for f in feeds) == source.num_samples == 24


@pytest.mark.parametrize("source,file", [("skimage", "astronaut.png"), ("sklearn", "china.jpg")])
def test_in_memory_photos_are_materialised_as_png(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, source: str, file: str) -> None:
    from PIL import Image

    module = importlib.import_module({"skimage": "skimage.data", "sklearn": "sklearn.datasets"}[source])
    expected = module.astronaut() if source == "skimage" else module.load_sample_image(file)
    # pretend the package keeps no file on disk: the locator must fall back to the loader
    monkeypatch.setattr(module, "__file__", str(tmp_path / "elsewhere" / "__init__.py"))
    monkeypatch.setenv("TRTCOMPRESS_CACHE", str(tmp_path / "cache"))
    entry = next(p for p in CATALOGUE if p.source == source and p.file == file)
    path = photos_module._LOCATORS[source](entry)
    assert path == tmp_path / "cache" / "photos" / f"{entry.name}.png"
    np.testing.assert_array_equal(np.asarray(Image.open(path)), expected)
    assert photos_module._LOCATORS[source](entry) == path  # second call reuses the cached file
