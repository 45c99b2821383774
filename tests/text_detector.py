"""The real text detector (PP-OCRv4 det, shipped by rapidocr-onnxruntime) and OpenCV's text photos,
split into disjoint calibration and evaluation folders. Shared by the quantization and comparison
tests (a uniquely named module: every test folder has a conftest)."""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest

PHOTOS = Path("/usr/share/doc/opencv-doc/examples/data")
CALIB = ("text_defocus.jpg", "text_motion.jpg", "licenseplate_motion.jpg", "notes.png")
EVAL = ("imageTextN.png", "imageTextR.png")
# PP-OCR's detector reads BGR, ImageNet-normalised; 320x320 keeps a run to seconds
PREPROCESS = "resize=320,crop=320,mean=0.485/0.456/0.406,std=0.229/0.224/0.225,order=BGR"
INPUTS = ("x:1x3x320x320",)
SCORES = "sigmoid_0.tmp_0"  # the score map: text where > 0.3 (rapidocr's threshold)


def det_model_path() -> Path:
    import importlib.util

    spec = importlib.util.find_spec("rapidocr_onnxruntime")  # not imported: the package needs OpenCV
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("rapidocr-onnxruntime is not installed (it ships the detector's ONNX file)")
    found = sorted((Path(list(spec.submodule_search_locations)[0]) / "models").glob("*det*.onnx"))
    if not found:
        pytest.skip("rapidocr-onnxruntime ships no detector model here")
    return found[0]


def det_model_opset13(out: Path) -> Path:
    """The detector converted to opset 13 (it ships at 12; per-channel Q/DQ needs 13)."""
    import onnx
    from onnx import version_converter

    onnx.save(version_converter.convert_version(onnx.load(str(det_model_path())), 13), str(out))
    return out


def text_photos(root: Path) -> tuple[Path, Path]:
    """(calibration folder, evaluation folder) with no photo in both."""
    if not all((PHOTOS / n).is_file() for n in CALIB + EVAL):
        pytest.skip(f"OpenCV's sample photos are not installed under {PHOTOS}")
    dirs = []
    for name, files in (("calib", CALIB), ("eval", EVAL)):
        d = root / name
        d.mkdir(parents=True, exist_ok=True)
        for f in files:
            shutil.copy(PHOTOS / f, d / f)
        dirs.append(d)
    return dirs[0], dirs[1]
