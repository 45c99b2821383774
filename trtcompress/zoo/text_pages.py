"""Printed text a text-line recognizer (PP-OCR's ``rec``) can be calibrated and judged on, offline.

Debian ``opencv-doc`` ships two renderings of one page of a textbook: ``imageTextN.png`` upright
and ``imageTextR.png`` rotated by about 9 degrees. The ``calib`` split is the upright page, the
``heldout`` split the rotated one (other pixels, other line crops), so a figure on ``heldout`` is
never measured on what was calibrated. Crops of photos are no substitute: on photos holding no text
83% of a recognizer's positions read blank and its agreement measures noise.
"""
from __future__ import annotations


import numpy as np

from ..errors import DataError
from .photos import OPENCV_DATA

__all__ = ["TEXT_PAGES", "text_lines"]

TEXT_PAGES = {"calib": "imageTextN.png", "heldout": "imageTextR.png"}


def text_lines(split: str, height: int = 48, width: int = 192) -> np.ndarray:
    """The split's page as a recognizer reads it, ``[n, 3, height, width]`` float32: the page's
    rotation undone, each line of text cut out (rows holding ink), scaled to ``height``, cut into
    ``width`` windows that hold ink, normalised as PP-OCR does (``(x - 0.5) / 0.5``)."""
    from PIL import Image

    if split not in TEXT_PAGES:
        raise DataError(f"unknown text split {split!r}; use one of {', '.join(TEXT_PAGES)}")
    path = OPENCV_DATA / TEXT_PAGES[split]
    if not path.is_file():
        raise DataError(f"{path} is missing; install it with: apt-get install opencv-doc")
    im = Image.open(path).convert("L")

    def rotated(angle: float) -> np.ndarray:
        return np.asarray(im.rotate(angle, resample=Image.BILINEAR, expand=True, fillcolor=255), np.float32)

    # the rotation that lines the text up with the rows gives the sharpest row profile of ink
    angle = max(np.arange(-15, 15.01, 0.25), key=lambda a: float(np.var((rotated(a) < 128).sum(1))))
    page = rotated(angle)
    ink_rows = np.append((page < 128).sum(1) > 1, False)
    lines, start = [], None
    for i, ink in enumerate(ink_rows):
        if ink and start is None:
            start = i
        elif not ink and start is not None:
            if i - start >= 8:  # shorter runs are specks, not lines
                lines.append((max(0, start - 3), min(len(page), i + 3)))
            start = None
    out = []
    for a, b in lines:
        line = Image.fromarray(page[a:b].astype(np.uint8)).convert("RGB")
        w = round(line.width * height / line.height)
        x = np.asarray(line.resize((w, height), Image.BILINEAR), np.float32) / 255
        for s in range(0, w, width):
            part = x[:, s : s + width]
            if (part < 0.5).mean() >= 0.02:
                win = np.ones((height, width, 3), np.float32)
                win[:, : part.shape[1]] = part
                out.append(((win - 0.5) / 0.5).transpose(2, 0, 1))
    return np.ascontiguousarray(np.stack(out))
