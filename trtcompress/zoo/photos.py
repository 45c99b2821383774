"""Real photos that are on disk without a network: scikit-image, scikit-learn and Debian opencv-doc.

Each photo belongs to a *scene*; a stereo pair or two views of one place form one scene, and a
scene lies wholly in one split, so no two splits share a source image. Only real colour
photographs are listed (no renders, paintings, logos, test patterns, digits or images with
drawn overlays). Three splits, each with one use:

- ``calib``: calibration data (what INT8 ranges are computed from).
- ``tune``: the 16 photos that design choices (calibration methods, per-tensor choices, the
  defaults) were tuned and compared on. Use it to tune; never quote a headline figure from it.
- ``heldout``: 46 photos that no design choice has seen, each pinned by a SHA-256 prefix so the
  set cannot drift with a package update. Headline figures (README, RESULTS) come from it only.

``eval`` is the old name of ``tune`` and is still accepted.
"""
from __future__ import annotations

import dataclasses
import functools
import gzip
import hashlib
import os
import shutil
from pathlib import Path
from typing import Iterator

import numpy as np

from ..data.base import Feed
from ..data.readers import Source, batched, register_reader
from ..data.preprocess import PreprocessConfig, load_image
from ..errors import ConfigError, DataError
from ..fileio import atomic_path

__all__ = ["Photo", "CATALOGUE", "SPLITS", "ALIASES", "photos", "available_photos", "photo_batch", "PhotoSource", "augmented_views", "cache_dir", "OPENCV_DATA", "OPENCV_DOC"]

OPENCV_DOC = Path("/usr/share/doc/opencv-doc")
OPENCV_DATA = OPENCV_DOC / "examples" / "data"
SPLITS = ("calib", "tune", "heldout")
ALIASES = {"eval": "tune"}  # the tuning photos' former name
VIEWS = 12  # views per photo when augmenting


@dataclasses.dataclass(frozen=True)
class Photo:
    """One catalogue entry: where the file comes from and which split its scene is in."""

    name: str
    source: str  # "skimage", "sklearn" or "opencv"
    file: str  # file name within the source
    scene: str
    split: str
    sha256: str = ""  # a prefix of the file's SHA-256 (after gunzip); pinned for the heldout split


def _cat(split: str, source: str, *entries: str | tuple[str, str]) -> list[Photo]:
    out = []
    for e in entries:
        file, scene = e if isinstance(e, tuple) else (e, e.rsplit(".", 1)[0])
        out.append(Photo(f"{source}-{file.rsplit('.', 1)[0]}", source, file, scene, split))
    return out


def _pinned(split: str, source: str, files: dict[str, str]) -> list[Photo]:
    """One photo per scene, each with the SHA-256 prefix its file must have."""
    out = []
    for file, digest in files.items():
        stem = file.rsplit("/", 1)[-1].rsplit(".", 1)[0]
        scene = f"{file.split('/')[1]}{stem}" if stem.isdigit() else stem  # examples/hfs/data/000.jpg: hfs000
        out.append(Photo(f"{source}-{scene}", source, file, scene, split, digest))
    return out


CATALOGUE: tuple[Photo, ...] = tuple(
    _cat("calib", "skimage", "astronaut.png", "coffee.png", ("motorcycle_left.png", "motorcycle"), ("motorcycle_right.png", "motorcycle"))
    + _cat("calib", "sklearn", "china.jpg")
    + _cat(
        "calib", "opencv",
        ("aero1.jpg", "aero"), ("aero3.jpg", "aero"), "apple.jpg", "board.jpg", "butterfly.jpg", ("ela_original.jpg", "ela"),
        "fruits.jpg", ("leuvenA.jpg", "leuven"), ("leuvenB.jpg", "leuven"), ("rubberwhale1.png", "rubberwhale"),
        ("rubberwhale2.png", "rubberwhale"), "smarties.png", "stuff.jpg",
    )
    + _cat("tune", "skimage", "chelsea.png", "rocket.jpg")
    + _cat("tune", "sklearn", "flower.jpg")
    + _cat(
        "tune", "opencv",
        ("aloeL.jpg", "aloe"), ("aloeR.jpg", "aloe"), "baboon.jpg", "building.jpg", "chicky_512.png", ("graf1.png", "graf"),
        ("graf3.png", "graf"), "home.jpg", "messi5.jpg", "orange.jpg", "squirrel_cls.jpg", ("left.jpg", "room"), ("right.jpg", "room"),
    )
    + _pinned("heldout", "skimage", {"hubble_deep_field.jpg": "3a19c5dd8a927a93", "ihc.png": "f8dd1aa387ddd1f4", "retina.jpg": "38a07f36f27f095e"})
    # opencv-doc 4.6's sample data beyond examples/data, and the photos its tutorials start from
    # (tutorial *results*, views of a calib/tune scene and images with drawn boxes are left out);
    # a path with a folder is relative to OPENCV_DOC
    + _pinned("heldout", "opencv", {
        "examples/data/licenseplate_motion.jpg": "ea6fa9cea75df91b", "examples/data/pca_test1.jpg": "9aae52b2bf730216",
        "examples/data/sudoku.png": "000cf81b7ce79501",
        "examples/alphamat/input_images/plant.jpg": "9928b44eee0d1d7a", "examples/hfs/data/000.jpg": "e4fec7e2e67a8a42",
        "examples/hfs/data/001.jpg": "4bcbe0927a8b50f2", "examples/hfs/data/002.jpg": "21b07a5287dec030",
        "examples/text/scenetext01.jpg": "7f3041a7019ab4d3", "examples/text/scenetext02.jpg": "d4295bff9f348012",
        "examples/text/scenetext03.jpg": "cadf4a3d29a7ba6f", "examples/text/scenetext04.jpg": "28e08d142a04f92f",
        "examples/text/scenetext05.jpg": "63985ac1a9989a83", "examples/text/scenetext06.jpg": "e4d64f10bbfb27b2",
        "examples/text/scenetext_segmented_word01.jpg": "b1524d1ae02ba1ee", "examples/text/scenetext_segmented_word02.jpg": "1c648c38ebf82696",
        "examples/text/scenetext_segmented_word03.jpg": "6f60d1b006b81d95", "examples/text/scenetext_segmented_word04.jpg": "43524ab83453638e",
        "examples/text/scenetext_segmented_word05.jpg": "3c805afc79559644",
        **{f"opencv4/html/{f}": h for f, h in {
            "227943776_1.jpg": "b038fd3919363b92", "230501201_1.jpg": "fe4ffecdddbd2d31", "4_barcodes.jpg": "1a6c1c1b9fda89a0",
            "Back_Projection_Theory0.jpg": "36265ed91ba8955a", "Background_Subtraction_Tutorial_frame.jpg": "4a23c10042f0b864",
            "Histogram_Calculation_Original_Image.jpg": "6c59e2065274fff3", "Hough_Lines_Tutorial_Original_Image.jpg": "1154379cb082c173",
            "Laplace_Operator_Tutorial_Original_Image.jpg": "6e838bc95591e154", "Pyramids_Tutorial_Original_Image.jpg": "332ed56dabc05434",
            "Remap_Tutorial_Original_Image.jpg": "e83e5c0216059324", "Threshold_inRange_Tutorial_Result_input.jpeg": "195e9da310d5cdbe",
            "Warp_Affine_Tutorial_Original_Image.jpg": "1c5aec922cbfcb40", "astra_color.jpg": "b6a1e10ea4418756",
            "bicubicOutput.jpg": "2d38d025281a2728", "coins.jpg": "7d95ab25d7ace50d", "detect_test1.jpg": "6c3472891b23060b",
            "detect_test2.jpg": "5ef2634046d80e6b", "fusion.png": "3994737ba4435440", "fusion_mertens.jpg": "55c82505db9ff727",
            "handSrc.jpg": "088532ab39ada21d", "newspaper.jpg": "9564a91a69830f3b", "realsense.jpg": "169ae127a1334d09",
            "retina_TreeHdr_small.jpg": "17d768b8cd61a5b0", "space_shuttle.jpg": "12a9c70863d95a9b", "studentsSample_input.jpg": "4f7158ae7b403405",
        }.items()},
    })
)

_INSTALL = {
    "skimage": "pip install scikit-image",
    "sklearn": "pip install scikit-learn",
    "opencv": "apt-get install opencv-doc",
}


def cache_dir() -> Path:
    """Where photos that are not plain files (in memory, gzip) are written: ``$TRTCOMPRESS_CACHE/photos``."""
    root = os.environ.get("TRTCOMPRESS_CACHE") or Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "trtcompress"
    return Path(root) / "photos"


def photos(split: str | None = None, strict: bool = False) -> list[Path]:
    """Paths of the catalogue's photos that are available here (of one split, or all), in the
    order of their catalogue names: the same wherever the packages holding them are installed
    (sorting paths put a venv's photos before or after /usr/share's depending on its location,
    which changed the first samples and so the sensitivity samples of a calibration).

    A source that is not installed is skipped; ``strict=True`` (or nothing found at all) raises
    :class:`DataError` naming what to install. The ``heldout`` split is always strict: its
    figures are only comparable over the whole pinned set.
    """
    return [path for _, path in sorted(available_photos(split, strict), key=lambda e: e[0].name)]


def available_photos(split: str | None = None, strict: bool = False) -> list[tuple[Photo, Path]]:
    """``(catalogue entry, path)`` of the available photos, in catalogue order."""
    split = ALIASES.get(split, split)  # type: ignore[arg-type]
    if split is not None and split not in SPLITS:
        raise ConfigError(f"photo split must be one of {', '.join(SPLITS)}, got {split!r}")
    strict = strict or split == "heldout"
    found, missing = [], set()
    for photo in CATALOGUE:
        if split is not None and photo.split != split:
            continue
        path = _locate(photo)
        if path is None:
            missing.add(photo.source)
        else:
            found.append((photo, path))
    if missing and (strict or not found):
        hints = "; ".join(_INSTALL[s] for s in sorted(missing))
        raise DataError(f"photos from {', '.join(sorted(missing))} are not available; install them: {hints}")
    return found


def _locate(photo: Photo) -> Path | None:
    try:
        path = _LOCATORS[photo.source](photo)
    except DataError:
        raise
    except (ImportError, OSError):
        return None
    if path is not None and photo.sha256 and not _sha256(path, path.stat().st_mtime_ns).startswith(photo.sha256):
        raise DataError(
            f"photo {photo.name} ({path}) is not the catalogued file (SHA-256 does not start with {photo.sha256}); "
            f"the {photo.split} split is pinned so its figures stay comparable: install the version the catalogue names "
            "(opencv-doc 4.6, scikit-image 0.26) or re-pin the split in trtcompress/zoo/photos.py and re-measure"
        )
    return path


@functools.lru_cache(maxsize=256)
def _sha256(path: Path, mtime_ns: int) -> str:
    """The file's SHA-256, cached per path and modification time (photos are read many times per run)."""
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _skimage(photo: Photo) -> Path | None:
    import skimage.data

    path = Path(skimage.data.__file__).parent / photo.file
    if path.is_file():
        return path
    # newer scikit-image keeps some images in memory or behind a fetcher: materialise offline
    loader = getattr(skimage.data, photo.file.rsplit(".", 1)[0], None)
    if loader is None:
        return None
    cached = cache_dir() / f"{photo.name}.png"
    if not cached.is_file():
        try:
            image = loader()
        except Exception:  # a fetcher that needs the network
            return None
        _save_png(np.asarray(image), cached)
    return cached


def _sklearn(photo: Photo) -> Path | None:
    import sklearn.datasets

    path = Path(sklearn.datasets.__file__).parent / "images" / photo.file
    if path.is_file():
        return path
    cached = cache_dir() / f"{photo.name}.png"
    if not cached.is_file():
        from sklearn.datasets import load_sample_image

        _save_png(load_sample_image(photo.file), cached)
    return cached


def _opencv(photo: Photo) -> Path | None:
    path = (OPENCV_DOC if "/" in photo.file else OPENCV_DATA) / photo.file
    if path.is_file():
        return path
    packed = path.with_name(path.name + ".gz")
    if not packed.is_file():
        return None
    cached = cache_dir() / Path(photo.file).name
    if not cached.is_file():
        with atomic_path(cached, suffix=cached.suffix) as tmp, gzip.open(packed, "rb") as src, open(tmp, "wb") as dst:
            shutil.copyfileobj(src, dst)
    return cached


_LOCATORS = {"skimage": _skimage, "sklearn": _sklearn, "opencv": _opencv}


def _save_png(array: np.ndarray, path: Path) -> None:
    from PIL import Image

    with atomic_path(path, suffix=".png") as tmp:
        Image.fromarray(array).save(tmp, format="PNG")


# -- augmented batches ----------------------------------------------------------------------------


def augmented_views(img, augment: bool = True, crop_fraction: float = 0.8) -> list:
    """The image, then (if ``augment``) four corner crops and a centre crop, each also mirrored.

    Crops keep ``crop_fraction`` of each side; 12 deterministic views per photo.
    """
    from PIL import ImageOps

    if not augment:
        return [img]
    w, h = img.size
    cw, ch = round(w * crop_fraction), round(h * crop_fraction)
    boxes = [(0, 0), (w - cw, 0), (0, h - ch), (w - cw, h - ch), ((w - cw) // 2, (h - ch) // 2)]
    views = [img] + [img.crop((x, y, x + cw, y + ch)) for x, y in boxes]
    return [v for view in views for v in (view, ImageOps.mirror(view))]


def _config(preprocess: PreprocessConfig | str) -> PreprocessConfig:
    return PreprocessConfig.parse(preprocess) if isinstance(preprocess, str) else preprocess


def photo_batch(
    split: str = "heldout", preprocess: PreprocessConfig | str = "efficientnet-lite", augment: bool = True, batch_size: int = 16, limit: int | None = None
) -> Iterator[np.ndarray]:
    """Yield preprocessed arrays ``[<=batch_size, C, H, W]`` of the split's photos and their views.

    Photos come in :func:`photos` order, each followed by its views; ``limit`` keeps the first photos.
    """
    if batch_size < 1:
        raise ConfigError(f"batch_size must be at least 1, got {batch_size}")
    config = _config(preprocess)
    buf: list[np.ndarray] = []
    for path in photos(split)[:limit]:
        for view in augmented_views(load_image(path, "RGB"), augment):
            buf.append(config.apply(view, str(path)))
            if len(buf) == batch_size:
                yield np.concatenate(buf)
                buf = []
    if buf:
        yield np.concatenate(buf)


class PhotoSource:
    """A feed source (``{input_name: batch}``) over :func:`photo_batch`, for compare and calibration."""

    def __init__(
        self, split: str = "heldout", preprocess: PreprocessConfig | str = "efficientnet-lite", input_name: str = "x", augment: bool = True, batch_size: int = 16, limit: int | None = None
    ):
        self.split, self.config, self.input_name = split, _config(preprocess), input_name
        self.augment, self.batch_size, self.limit = augment, batch_size, limit
        self.num_samples = len(photos(split)[:limit]) * (VIEWS if augment else 1)

    def __iter__(self) -> Iterator[Feed]:
        for batch in photo_batch(self.split, self.config, self.augment, self.batch_size, self.limit):
            yield {self.input_name: batch}

    def __len__(self) -> int:
        return -(-self.num_samples // self.batch_size)


@register_reader("photos", bare=True)
def _photos_reader(spec: str, inputs, options) -> Source:
    """``photos`` or ``photos:calib|tune|heldout``: each photo with its views (preprocessed, default efficientnet-lite).

    One item is one photo's 12 views (the feed when no batch size is given).
    """
    if len(inputs) != 1:
        raise ConfigError(f"photos feed a single-input model; this model has {len(inputs)} inputs")
    pre = options.preprocess or PreprocessConfig.parse("efficientnet-lite")
    name = inputs[0].name

    def make(path: Path) -> Feed:
        return {name: np.concatenate([pre.apply(v, str(path)) for v in augmented_views(load_image(path, "RGB"))])}

    return batched(Source(photos(spec or "heldout"), make, inputs, str, lambda _: VIEWS), options)
