"""Image preprocessing spec: ``resize=256,crop=224,mean=0.5,std=0.5,order=RGB,layout=NCHW``."""
from __future__ import annotations

import dataclasses
import gzip
import io
from pathlib import Path

import numpy as np

from ..config import Config
from ..errors import ConfigError, DataError

__all__ = ["PreprocessConfig", "load_image", "IMAGE_SUFFIXES"]

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".ppm", ".pgm", ".tif", ".tiff", ".webp", ".gif")

_PRESETS = {
    # torchvision-style ImageNet models
    "imagenet": dict(resize=256, crop=224, mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225)),
    # EfficientNet-Lite: RGB in [0, 1] then x * 2 - 1
    "efficientnet-lite": dict(resize=256, crop=224, mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5)),
    # Fashion-MNIST-like grayscale 28x28 in [0, 1]
    "mnist": dict(resize=28, crop=28, mean=(0.0,), std=(1.0,), order="L"),
}


@dataclasses.dataclass(frozen=True)
class PreprocessConfig(Config):
    """How an image file becomes an input tensor.

    ``resize`` scales the short side (0 keeps the size), ``crop`` takes a centre square (0: none),
    pixels become ``x / 255`` then ``(x - mean) / std``; ``order`` is RGB, BGR or L (grayscale);
    ``layout`` NCHW or NHWC; ``dtype`` float32, float16 or uint8 (uint8 skips scaling).
    """

    resize: int = 256
    crop: int = 224
    mean: tuple[float, ...] = (0.485, 0.456, 0.406)
    std: tuple[float, ...] = (0.229, 0.224, 0.225)
    order: str = "RGB"
    layout: str = "NCHW"
    dtype: str = "float32"

    def validate(self) -> None:
        if self.order not in ("RGB", "BGR", "L"):
            raise ConfigError(f"order must be RGB, BGR or L, got {self.order!r}")
        if self.layout not in ("NCHW", "NHWC"):
            raise ConfigError(f"layout must be NCHW or NHWC, got {self.layout!r}")
        if self.dtype not in ("float32", "float16", "uint8"):
            raise ConfigError(f"dtype must be float32, float16 or uint8, got {self.dtype!r}")
        channels = 1 if self.order == "L" else 3
        for name, v in (("mean", self.mean), ("std", self.std)):
            if len(v) not in (1, channels):
                raise ConfigError(f"{name} needs 1 or {channels} values, got {len(v)}")
        if any(s <= 0 for s in self.std):
            raise ConfigError("std values must be positive")
        if self.resize < 0 or self.crop < 0:
            raise ConfigError("resize and crop must be >= 0")

    @classmethod
    def parse(cls, text: str) -> "PreprocessConfig":
        """Parse ``preset[,key=value...]`` or ``key=value,...`` (mean/std take values split by '/')."""
        fields: dict = {}
        for part in [p.strip() for p in text.split(",") if p.strip()]:
            if "=" not in part:
                if part.lower() not in _PRESETS:
                    raise ConfigError(f"unknown preprocessing preset {part!r}; presets: {', '.join(_PRESETS)}")
                fields.update(_PRESETS[part.lower()])
                continue
            key, value = (s.strip() for s in part.split("=", 1))
            if key in ("resize", "crop"):
                fields[key] = _int(key, value)
            elif key in ("mean", "std"):
                try:
                    fields[key] = tuple(float(x) for x in value.split("/"))
                except ValueError:
                    raise ConfigError(f"{key} must be numbers separated by '/', got {value!r}") from None
            elif key in ("order", "layout"):
                fields[key] = value.upper()
            elif key == "dtype":
                fields[key] = value.lower()
            else:
                raise ConfigError(f"unknown preprocessing key {key!r}; keys: resize, crop, mean, std, order, layout, dtype")
        return cls(**fields)

    def __call__(self, path: str | Path) -> np.ndarray:
        """One image file -> array with a batch dimension of 1."""
        return self.apply(load_image(path, "L" if self.order == "L" else "RGB"), str(path))

    def apply(self, img, name: str = "image") -> np.ndarray:
        """A PIL image already in memory (e.g. an augmented crop) -> array with a batch dimension of 1."""
        img = img.convert("L" if self.order == "L" else "RGB")
        path = name
        if self.resize:
            w, h = img.size
            s = self.resize / min(w, h)
            img = img.resize((max(1, round(w * s)), max(1, round(h * s))), resample=_bilinear())
        if self.crop:
            w, h = img.size
            if w < self.crop or h < self.crop:
                raise DataError(f"{path}: image {w}x{h} is smaller than crop {self.crop}; lower crop or raise resize")
            left, top = (w - self.crop) // 2, (h - self.crop) // 2
            img = img.crop((left, top, left + self.crop, top + self.crop))
        a = np.asarray(img)
        if a.ndim == 2:
            a = a[:, :, None]
        if self.order == "BGR":
            a = a[:, :, ::-1]
        if self.dtype != "uint8":
            a = a.astype(np.float32) / 255.0
            a = (a - np.asarray(self.mean, np.float32)) / np.asarray(self.std, np.float32)
        a = a.astype(self.dtype)
        if self.layout == "NCHW":
            a = a.transpose(2, 0, 1)
        return np.ascontiguousarray(a[None])


def _int(key: str, value: str) -> int:
    try:
        return int(value)
    except ValueError:
        raise ConfigError(f"{key} must be an integer, got {value!r}") from None


def _bilinear():
    from PIL import Image

    return Image.Resampling.BILINEAR


def load_image(path: str | Path, mode: str = "RGB"):
    """Open an image (optionally gzip-compressed) as a PIL image in ``mode``."""
    from PIL import Image, UnidentifiedImageError

    p = Path(path)
    try:
        if p.suffix == ".gz":
            img = Image.open(io.BytesIO(gzip.decompress(p.read_bytes())))
        else:
            img = Image.open(p)
        img.load()
    except FileNotFoundError:
        raise DataError(f"image not found: {p}") from None
    except (UnidentifiedImageError, OSError, EOFError) as e:
        raise DataError(f"{p}: not a readable image ({e}); remove it from the folder") from e
    return img.convert(mode)
