"""Regenerate the ready calibration and evaluation sets in this folder.

    python calibration/make_sets.py

- ``photos/``: the ``calib`` split of :func:`trtcompress.zoo.photos` as JPEG files (short side
  320 px), for ImageNet models with ``--preprocess efficientnet-lite`` (or ``imagenet``).
- ``fashion_mnist/``: 512 Fashion-MNIST *training* images (a seeded random subset) in 8 ``.npz``
  files of 64, array ``x`` float32 ``[64, 1, 28, 28]`` in [0, 1].
- ``fashion_mnist_eval.npz``: the first 1000 *test* images ``x`` with their ``labels`` (int64),
  for accuracy checks where the Debian package is not installed. Not a calibration source (the
  ``labels`` array is not a model input).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))  # run from a checkout without installing

from trtcompress.data.preprocess import load_image  # noqa: E402
from trtcompress.fileio import atomic_dir, atomic_path  # noqa: E402
from trtcompress.zoo import fashion_mnist  # noqa: E402
from trtcompress.zoo.photos import available_photos  # noqa: E402

PHOTO_SHORT_SIDE = 320
JPEG_QUALITY = 88
FASHION_CALIB = 512
FASHION_FILE = 64
FASHION_EVAL = 1000
SEED = 0


def make_photos(out: Path) -> list[Path]:
    """Write the calib split, downscaled so the short side is PHOTO_SHORT_SIDE (never upscaled)."""
    from PIL import Image

    written = []
    with atomic_dir(out) as tmp:
        for photo, src in available_photos("calib", strict=True):
            img = load_image(src, "RGB")
            scale = PHOTO_SHORT_SIDE / min(img.size)
            if scale < 1:
                img = img.resize((round(img.width * scale), round(img.height * scale)), Image.Resampling.LANCZOS)
            name = f"{photo.name}.jpg"
            img.save(tmp / name, format="JPEG", quality=JPEG_QUALITY, optimize=True)
            written.append(out / name)
    return written


def make_fashion(out: Path) -> None:
    images, _ = fashion_mnist("train")
    pick = np.sort(np.random.default_rng(SEED).permutation(len(images))[:FASHION_CALIB])
    with atomic_dir(out) as tmp:
        for i in range(0, FASHION_CALIB, FASHION_FILE):
            np.savez_compressed(tmp / f"train-{i // FASHION_FILE:02d}.npz", x=images[pick[i : i + FASHION_FILE]])


def make_fashion_eval(path: Path) -> None:
    images, labels = fashion_mnist("test", limit=FASHION_EVAL)
    with atomic_path(path, suffix=".npz") as tmp:
        with open(tmp, "wb") as f:
            np.savez_compressed(f, x=images, labels=labels)


def _readable(root: Path) -> None:
    """Temporary files are created private; the shipped sets are for everyone to read."""
    for path in [root / "photos", root / "fashion_mnist", root / "fashion_mnist_eval.npz"]:
        for p in [path, *path.rglob("*")] if path.is_dir() else [path]:
            p.chmod(0o755 if p.is_dir() else 0o644)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=HERE)
    args = parser.parse_args(argv)
    written = make_photos(args.out / "photos")
    make_fashion(args.out / "fashion_mnist")
    make_fashion_eval(args.out / "fashion_mnist_eval.npz")
    _readable(args.out)
    total = sum(p.stat().st_size for p in written)
    print(f"photos: {len(written)} files, {total / 1e6:.2f} MB; fashion_mnist: {FASHION_CALIB} samples; eval: {FASHION_EVAL} samples")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
