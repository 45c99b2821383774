"""Unlabelled pictures of objects for label-free distillation: Debian ``tuxpaint-stamps-default``.

The photo splits hold 80 photos, and 46 of them are held out, so distilling an ImageNet model
(``finetune`` after ``share``, 2:4 or low-rank) had 34 photos to learn from. Tux Paint's stamps are
345 cut-out pictures of animals, fruit, vegetables, plants, vehicles, tools, clothes and buildings
(most of them photographs, 20-900 px), the kind of object ImageNet's classes name. They are
composited onto a white square (the product-shot look ImageNet also holds), object centred.

Letters, symbols, flags, road signs, seasonal clip art, cartoons and the ``*_mirror`` copies are
left out. None of these pictures is in any photo split, so training on them leaves ``tune`` and
``heldout`` untouched. No labels: use them with ``alpha 0`` (the teacher's outputs are the target).
"""
from __future__ import annotations

from pathlib import Path

from ..data.base import Feed
from ..data.preprocess import PreprocessConfig
from ..data.readers import Source, batched, register_reader
from ..errors import ConfigError, DataError

__all__ = ["STAMPS_DIR", "stamp_images", "stamp_paths"]

STAMPS_DIR = Path("/usr/share/tuxpaint/stamps")
_LEFT_OUT = ("symbols", "cartoon", "flags", "roadsigns", "seasonal")
FILL = 0.9  # the object's longer side, as a fraction of the square's side


def stamp_paths() -> list[Path]:
    """The stamps' PNG files, sorted by path relative to the stamps folder."""
    if not STAMPS_DIR.is_dir():
        raise DataError(f"{STAMPS_DIR} is missing; install the pictures with: apt-get install tuxpaint-stamps-default")
    kept = [p.relative_to(STAMPS_DIR) for p in STAMPS_DIR.rglob("*.png") if not p.stem.endswith("_mirror")]
    kept = [p for p in kept if not any(k in folder for folder in p.parts[:-1] for k in _LEFT_OUT)]
    return [STAMPS_DIR / p for p in sorted(kept, key=Path.as_posix)]


def stamp_images(limit: int | None = None):
    """The stamps as RGB PIL images: each on a white square, its longer side ``FILL`` of the square."""
    for path in stamp_paths()[:limit]:
        yield _composite(path)


def _composite(path: Path):
    from PIL import Image

    im = Image.open(path).convert("RGBA")
    side = max(1, round(max(im.size) / FILL))
    canvas = Image.new("RGBA", (side, side), (255, 255, 255, 255))
    canvas.alpha_composite(im, ((side - im.width) // 2, (side - im.height) // 2))
    return canvas.convert("RGB")


@register_reader("stamps", bare=True)
def _stamps_reader(spec: str, inputs, options) -> Source:
    """``stamps`` (all 345) or ``stamps:N`` (the first N): one sample per picture, preprocessed
    (default efficientnet-lite)."""
    if len(inputs) != 1:
        raise ConfigError(f"stamps feed a single-input model; this model has {len(inputs)} inputs")
    if spec and not spec.isdigit():
        raise ConfigError(f"stamps spec 'stamps:{spec}': give a count, e.g. stamps:100")
    pre = options.preprocess or PreprocessConfig.parse("efficientnet-lite")
    name = inputs[0].name

    def make(path: Path) -> Feed:
        return {name: pre.apply(_composite(path), str(path))}

    paths = stamp_paths()[: int(spec) if spec else None]
    return batched(Source(paths, make, inputs, str, lambda _: 1), options)
