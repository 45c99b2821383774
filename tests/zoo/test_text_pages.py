"""Text lines from OpenCV's two text pages: what PP-OCR's recognizer reads on them is the page's text."""
from __future__ import annotations


import numpy as np
import onnx
import onnxruntime as ort
import pytest
from corpus.builders import RAPIDOCR
from corpus.checks import ctc_text

from trtcompress import zoo
from trtcompress.errors import DataError

REC = RAPIDOCR / "ch_PP-OCRv4_rec_infer.onnx"


def _read(x: np.ndarray) -> str:
    if not REC.is_file():
        pytest.skip("rapidocr-onnxruntime (the recognizer's ONNX file) is not installed")
    model = onnx.load(REC)
    chars = [""] + {p.key: p.value for p in model.metadata_props}["character"].splitlines() + [" "]
    scores = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    return " ".join("".join(chars[k] for k in line) for line in ctc_text(scores))


@pytest.mark.parametrize("split", ["calib", "heldout"])
def test_text_lines_read_as_the_page(split):
    try:
        x = zoo.text_lines(split)
    except DataError as e:
        pytest.skip(str(e))
    assert x.dtype == np.float32 and x.shape[1:] == (3, 48, 192) and len(x) > 40
    assert x.min() >= -1 and x.max() <= 1
    text = _read(x).replace(" ", "")  # windows cut words: compare without spaces
    # words of the page, on the rotated page too (its rotation is undone before lines are cut)
    for word in ("complex", "students", "projects", "problems"):
        assert word in text, (word, text[:200])


def test_unknown_split():
    with pytest.raises(DataError, match="unknown text split"):
        zoo.text_lines("tune")
