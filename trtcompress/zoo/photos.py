"""Real photos that are on disk without a network: scikit-image, scikit-learn and Debian opencv-doc.

Each photo belongs to a *scene*; a stereo pair or two views of one place form one scene, and a
scene lies wholly in one split, so the ``calib`` and ``eval`` splits share no source image. Only
real colour photographs are listed (no renders, paintings, logos, test patterns or digits).
"""
from __future__ import annotations

import dataclasses
import gzip
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

__all__ = ["Photo", "CATALOGUE", "SPLITS", "photos", "available_photos", "photo_batch", "PhotoSource", "augmented_views", "cache_dir", "OPENCV_DATA"]

OPENCV_DATA = Path("/usr/share/doc/opencv-doc/examples/data")
SPLITS = ("calib", "eval")
VIEWS = 12  # views per photo when augmenting


@dataclasses.dataclass(frozen=True)
class Photo:
    """One catalogue entry: where the file comes from and which split its scene is in."""

    name: str
    source: str  # "skimage", "sklearn" or "opencv"
    file: str  # file name within the source
    scene: str
    split: str


def _cat(split: str, source: str, *entries: str | tuple[str, str]) -> list[Photo]:
    out = []
    for e in entries:
        file, scene = e if isinstance(e, tuple) else (e, e.rsplit(".", 1)[0])
        out.append(Photo(f"{source}-{file.rsplit('.', 1)[0]}", source, file, scene, split))
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
    + _cat("eval", "skimage", "chelsea.png", "rocket.jpg")
    + _cat("eval", "sklearn", "flower.jpg")
    + _cat(
        "eval", "opencv",
        ("aloeL.jpg", "aloe"), ("aloeR.jpg", "aloe"), "baboon.jpg", "building.jpg", "chicky_512.png", ("graf1.png", "graf"),
        ("graf3.png", "graf"), "home.jpg", "messi5.jpg", "orange.jpg", "squirrel_cls.jpg", ("left.jpg", "room"), ("right.jpg", "room"),
    )
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
    :class:`DataError` naming what to install.
    """
    return [path for _, path in sorted(available_photos(split, strict), key=lambda e: e[0].name)]


def available_photos(split: str | None = None, strict: bool = False) -> list[tuple[Photo, Path]]:
    """``(catalogue entry, path)`` of the available photos, in catalogue order."""
    if split is not None and split not in SPLITS:
        raise ConfigError(f"photo split must be one of {', '.join(SPLITS)}, got {split!r}")
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
        return _LOCATORS[photo.source](photo)
    except DataError:
        raise
    except (ImportError, OSError):
        return None


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
    path = OPENCV_DATA / photo.file
    if path.is_file():
        return path
    packed = path.with_name(path.name + ".gz")
    if not packed.is_file():
        return None
    cached = cache_dir() / photo.file
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
    split: str = "eval", preprocess: PreprocessConfig | str = "efficientnet-lite", augment: bool = True, batch_size: int = 16, limit: int | None = None
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
        self, split: str = "eval", preprocess: PreprocessConfig | str = "efficientnet-lite", input_name: str = "x", augment: bool = True, batch_size: int = 16, limit: int | None = None
    ):
        self.split, self.config, self.input_name = split, _config(preprocess), input_name
        self.augment, self.batch_size, self.limit = augment, batch_size, limit
        self.num_samples = len(photos(split)[:limit]) * (VIEWS if augment else 1)

    def __iter__(self) -> Iterator[Feed]:
        for batch in photo_batch(self.split, self.config, self.augment, self.batch_size, self.limit):
            yield {self.input_name: batch}

    def __len__(self) -> int:
        return -(-self.num_samples // self.batch_size)


@register_reader("photos")
def _photos_reader(spec: str, inputs, options) -> Source:
    """``photos`` or ``photos:calib|eval``: each photo with its views (preprocessed, default efficientnet-lite).

    One item is one photo's 12 views (the feed when no batch size is given).
    """
    if len(inputs) != 1:
        raise ConfigError(f"photos feed a single-input model; this model has {len(inputs)} inputs")
    pre = options.preprocess or PreprocessConfig.parse("efficientnet-lite")
    name = inputs[0].name

    def make(path: Path) -> Feed:
        return {name: np.concatenate([pre.apply(v, str(path)) for v in augmented_views(load_image(path, "RGB"))])}

    return batched(Source(photos(spec or "eval"), make, inputs, str, lambda _: VIEWS), options)
