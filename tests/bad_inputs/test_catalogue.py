"""The bad-input catalogue (tests/bad_inputs/README.md): one case per row, each driving the real CLI.

A case builds its bad input in ``tmp`` and returns the command line and a pattern the one-line
error must match; :class:`conftest.BadRun` checks the rest of the contract (non-zero exit, one
line, no traceback, the output folder untouched)."""
from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np
import pytest

from badinput_support import copy_model

CASES: dict[str, tuple[Callable[[Path, Path, Path], list], str]] = {}


def case(name: str, expect: str):
    def deco(fn):
        CASES[name] = (fn, expect)
        return fn

    return deco


def _truncate(p: Path, keep: float = 0.5) -> Path:
    data = p.read_bytes()
    p.write_bytes(data[: int(len(data) * keep)])
    return p


def _npz(folder: Path, **arrays) -> Path:
    folder.mkdir(exist_ok=True)
    np.savez(folder / "s0.npz", **arrays)
    return folder


def _x(n=2, hw=16, dtype=np.float32, fill=None):
    a = np.random.default_rng(0).standard_normal((n, 3, hw, hw)).astype(dtype)
    if fill is not None:
        a.flat[3] = fill
    return a


# -- ONNX files --------------------------------------------------------------------------------

@case("inspect-missing-file", r"not found.*check the path")
def _(m, tmp, out):
    return ["inspect", tmp / "nope.onnx"]


@case("inspect-empty-file", r"empty.*re-export")
def _(m, tmp, out):
    (tmp / "e.onnx").write_bytes(b"")
    return ["inspect", tmp / "e.onnx"]


@case("inspect-corrupt-file", r"not a readable ONNX model|not a complete ONNX model")
def _(m, tmp, out):
    (tmp / "c.onnx").write_bytes(np.random.default_rng(1).integers(0, 256, 4000, dtype=np.uint8).tobytes())
    return ["inspect", tmp / "c.onnx"]


@case("inspect-truncated-file", r"corrupt or truncated|truncated")
def _(m, tmp, out):
    return ["inspect", _truncate(copy_model(m, "tiny.onnx", tmp))]


@case("inspect-text-file", r"not a (readable|complete) ONNX model")
def _(m, tmp, out):
    (tmp / "t.onnx").write_text("this is not a model\n")
    return ["inspect", tmp / "t.onnx"]


@case("inspect-directory", r"is a directory.*\.onnx file inside")
def _(m, tmp, out):
    (tmp / "d.onnx").mkdir()
    return ["inspect", tmp / "d.onnx"]


@case("inspect-npz-as-onnx", r"not a (readable|complete) ONNX model")
def _(m, tmp, out):
    np.savez(tmp / "data.npz", x=_x())
    (tmp / "data.npz").rename(tmp / "m.onnx")
    return ["inspect", tmp / "m.onnx"]


@case("quantize-truncated-model", r"truncated")
def _(m, tmp, out):
    return ["quantize", _truncate(copy_model(m, "tiny.onnx", tmp), 0.8), "-o", out / "q.onnx"]


@case("quantize-missing-model", r"not found")
def _(m, tmp, out):
    return ["quantize", tmp / "missing.onnx", "-o", out / "q.onnx"]


@case("sparsify-corrupt-model", r"not a (readable|complete) ONNX model")
def _(m, tmp, out):
    p = copy_model(m, "tiny.onnx", tmp)
    b = bytearray(p.read_bytes())
    b[:64] = b"\xff" * 64
    p.write_bytes(bytes(b))
    return ["sparsify", p, "-o", out / "s.onnx"]


@case("lowrank-empty-model", r"empty")
def _(m, tmp, out):
    (tmp / "e.onnx").write_bytes(b"")
    return ["lowrank", tmp / "e.onnx", "-o", out / "l.onnx"]


@case("compare-missing-candidate", r"not found")
def _(m, tmp, out):
    return ["compare", m / "tiny.onnx", tmp / "gone.onnx"]


@case("bench-corrupt-model", r"not a (readable|complete) ONNX model|truncated")
def _(m, tmp, out):
    p = tmp / "b.onnx"
    p.write_bytes(b"\x08\x07\x12\x04junk" * 50)
    return ["bench", m / "tiny.onnx", p, "--iterations", "2", "--rounds", "1"]


@case("compress-missing-model", r"not found")
def _(m, tmp, out):
    return ["compress", tmp / "nope.onnx", "--stages", "sparsify", "--runs-dir", out, "--name", "r", "--no-bench"]


# -- external data ------------------------------------------------------------------------------

@case("quantize-external-data-missing", r"external data file .* missing.*beside")
def _(m, tmp, out):
    p = copy_model(m, "ext/tiny.onnx", tmp)
    (p.parent / "tiny.onnx.data").unlink()
    return ["quantize", p, "-o", out / "q.onnx"]


@case("sparsify-external-data-truncated", r"external data file .* truncated")
def _(m, tmp, out):
    p = copy_model(m, "ext/tiny.onnx", tmp)
    _truncate(p.parent / "tiny.onnx.data")
    return ["sparsify", p, "-o", out / "s.onnx"]


@case("compare-external-data-missing", r"external data file .* missing")
def _(m, tmp, out):
    p = copy_model(m, "ext/tiny.onnx", tmp)
    (p.parent / "tiny.onnx.data").unlink()
    return ["compare", m / "tiny.onnx", p]


@case("inspect-external-data-missing", r"external data file .* missing")
def _(m, tmp, out):
    p = copy_model(m, "ext/tiny.onnx", tmp)
    (p.parent / "tiny.onnx.data").unlink()
    return ["inspect", p]


# -- unsupported opsets and ops ----------------------------------------------------------------

@case("quantize-opset-too-new", r"opset.*99")
def _(m, tmp, out):
    return ["quantize", m / "opset99.onnx", "--calib", _npz(tmp / "c", x=_x()), "-o", out / "q.onnx"]


@case("sparsify-opset-too-old", r"opset 1, older.*convert")
def _(m, tmp, out):
    return ["sparsify", m / "opset1.onnx", "-o", out / "s.onnx"]


@case("compare-opset-too-new", r"opset.*99")
def _(m, tmp, out):
    return ["compare", m / "tiny.onnx", m / "opset99.onnx"]


@case("sparsify-opset-too-new", r"opset.*99")
def _(m, tmp, out):
    return ["sparsify", m / "opset99.onnx", "-o", out / "s.onnx"]


@case("bench-unknown-op", r"FancyActivation|com\.example")
def _(m, tmp, out):
    return ["bench", m / "customop.onnx", "--iterations", "2", "--rounds", "1"]


@case("quantize-unknown-op", r"FancyActivation|com\.example")
def _(m, tmp, out):
    x = np.ones((1, 4), np.float32)
    return ["quantize", m / "customop.onnx", "--calib", _npz(tmp / "c", x=x), "-o", out / "q.onnx"]


# -- models with nothing to compress -----------------------------------------------------------

@case("quantize-no-float-weights", r"nothing to quantize")
def _(m, tmp, out):
    return ["quantize", m / "noweights.onnx", "--calib", _npz(tmp / "c", x=np.ones((2, 8), np.float32)), "-o", out / "q.onnx"]


@case("sparsify-no-float-weights", r"no .*(weight|layer)")
def _(m, tmp, out):
    return ["sparsify", m / "noweights.onnx", "-o", out / "s.onnx"]


@case("lowrank-no-float-weights", r"no .*(weight|layer)")
def _(m, tmp, out):
    return ["lowrank", m / "noweights.onnx", "-o", out / "l.onnx"]


# -- compare: two models that do not take the same inputs ----------------------------------------

@case("compare-input-names-differ", r"inputs? .*(differ|do not match).*image")
def _(m, tmp, out):
    return ["compare", m / "tiny.onnx", m / "renamed.onnx"]


@case("compare-input-shapes-differ", r"inputs? .*(differ|do not match)")
def _(m, tmp, out):
    return ["compare", m / "tiny.onnx", m / "bigger.onnx"]


@case("compare-unknown-output", r"output\(s\) nosuch not produced.*pass --outputs")
def _(m, tmp, out):
    return ["compare", m / "tiny.onnx", m / "tiny.onnx", "--outputs", "nosuch"]


# -- calibration and evaluation data -----------------------------------------------------------

@case("quantize-calib-wrong-name", r"missing input.*x")
def _(m, tmp, out):
    return ["quantize", m / "tiny.onnx", "--calib", _npz(tmp / "c", image=_x()), "-o", out / "q.onnx"]


@case("quantize-calib-wrong-shape", r"shape")
def _(m, tmp, out):
    return ["quantize", m / "tiny.onnx", "--calib", _npz(tmp / "c", x=_x(hw=20)), "-o", out / "q.onnx"]


@case("quantize-calib-wrong-dtype", r"dtype.*convert")
def _(m, tmp, out):
    return ["quantize", m / "tiny.onnx", "--calib", _npz(tmp / "c", x=_x().astype(np.int32)), "-o", out / "q.onnx"]


@case("quantize-calib-nan", r"NaN|non-finite")
def _(m, tmp, out):
    return ["quantize", m / "tiny.onnx", "--calib", _npz(tmp / "c", x=_x(fill=np.nan)), "-o", out / "q.onnx"]


@case("quantize-calib-inf", r"Inf|non-finite")
def _(m, tmp, out):
    return ["quantize", m / "tiny.onnx", "--calib", _npz(tmp / "c", x=_x(fill=np.inf)), "-o", out / "q.onnx"]


@case("quantize-calib-empty-folder", r"holds no \.npz/\.npy files or images \(nothing\); put the data there")
def _(m, tmp, out):
    (tmp / "c").mkdir()
    return ["quantize", m / "tiny.onnx", "--calib", tmp / "c", "-o", out / "q.onnx"]


@case("quantize-calib-zero-samples", r"no (calibration )?samples|empty|0 samples")
def _(m, tmp, out):
    return ["quantize", m / "tiny.onnx", "--calib", _npz(tmp / "c", x=_x(n=0)), "-o", out / "q.onnx"]


@case("quantize-calib-corrupt-npz", r"not a readable numpy file.*re-save it")
def _(m, tmp, out):
    (tmp / "c").mkdir()
    (tmp / "c" / "s0.npz").write_bytes(b"PK\x03\x04 broken zip")
    return ["quantize", m / "tiny.onnx", "--calib", tmp / "c", "-o", out / "q.onnx"]


@case("quantize-calib-missing-folder", r"not found")
def _(m, tmp, out):
    return ["quantize", m / "tiny.onnx", "--calib", tmp / "nowhere", "-o", out / "q.onnx"]


@case("quantize-calib-pickled-object", r"not a readable numpy file.*no pickled objects")
def _(m, tmp, out):
    (tmp / "c").mkdir()
    np.save(tmp / "c" / "s0.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    return ["quantize", m / "tiny.onnx", "--calib", tmp / "c", "-o", out / "q.onnx"]


@case("compare-data-nan", r"NaN|non-finite")
def _(m, tmp, out):
    return ["compare", m / "tiny.onnx", m / "tiny.onnx", "--data", _npz(tmp / "d", x=_x(fill=np.nan))]


@case("lowrank-data-wrong-shape", r"shape")
def _(m, tmp, out):
    return ["lowrank", m / "tiny.onnx", "--rule", "error", "--data", _npz(tmp / "d", x=_x(hw=8)), "-o", out / "l.onnx"]


@case("quantize-image-folder-not-images", r"not a readable image.*remove it")
def _(m, tmp, out):
    (tmp / "imgs").mkdir()
    (tmp / "imgs" / "a.jpg").write_text("not a jpeg")
    return ["quantize", m / "static.onnx", "--calib", tmp / "imgs", "--preprocess", "resize=16,crop=16", "-o", out / "q.onnx"]


@case("quantize-image-folder-only-text", r"holds no \.npz/\.npy files or images \(only notes.txt\)")
def _(m, tmp, out):
    (tmp / "imgs").mkdir()
    (tmp / "imgs" / "notes.txt").write_text("hello")
    return ["quantize", m / "static.onnx", "--calib", tmp / "imgs", "--preprocess", "resize=16,crop=16", "-o", out / "q.onnx"]


@case("quantize-image-folder-no-preprocess", r"preprocess")
def _(m, tmp, out):
    from PIL import Image

    (tmp / "imgs").mkdir()
    Image.new("RGB", (20, 20)).save(tmp / "imgs" / "a.png")
    return ["quantize", m / "static.onnx", "--calib", tmp / "imgs", "-o", out / "q.onnx"]


@case("quantize-table-corrupt", r"not a trtcompress calibration table.*recalibrate")
def _(m, tmp, out):
    (tmp / "t.json").write_text("{not json")
    return ["quantize", m / "tiny.onnx", "--table", tmp / "t.json", "-o", out / "q.onnx"]


@case("quantize-table-other-model", r"table has no range for tensor 'x'.*another model.*recalibrate")
def _(m, tmp, out):
    (tmp / "t.json").write_text('{"amax": {"zzz": 1.0}, "method": "entropy"}')
    return ["quantize", m / "tiny.onnx", "--table", tmp / "t.json", "-o", out / "q.onnx"]


@case("compare-data-random-count", r"random:8")
def _(m, tmp, out):
    return ["compare", m / "tiny.onnx", m / "tiny.onnx", "--data", "random:many"]


# -- preprocessing strings and --input specs ---------------------------------------------------

@case("quantize-preprocess-unknown-preset", r"unknown preprocessing preset.*presets")
def _(m, tmp, out):
    return ["quantize", m / "static.onnx", "--preprocess", "imagenett", "-o", out / "q.onnx"]


@case("compare-preprocess-bad-number", r"resize must be an integer")
def _(m, tmp, out):
    return ["compare", m / "tiny.onnx", m / "tiny.onnx", "--preprocess", "resize=big"]


@case("compare-preprocess-unknown-key", r"unknown preprocessing key")
def _(m, tmp, out):
    return ["compare", m / "tiny.onnx", m / "tiny.onnx", "--preprocess", "zoom=2"]


@case("bench-input-spec-bad-dims", r"bad dimension")
def _(m, tmp, out):
    return ["bench", m / "tiny.onnx", "--input", "x:1x3x16x?", "--iterations", "2"]


@case("bench-input-spec-unknown-name", r"--input names y, which the model does not take.*inputs are x")
def _(m, tmp, out):
    return ["bench", m / "tiny.onnx", "--input", "y:1x3x16x16", "--iterations", "2", "--rounds", "1"]


@case("compare-input-spec-bad-dtype", r"bad dtype")
def _(m, tmp, out):
    return ["compare", m / "tiny.onnx", m / "tiny.onnx", "--input", "x:1x3x16x16:complex"]


@case("compare-input-spec-wrong-rank", r"shape|dimension")
def _(m, tmp, out):
    return ["compare", m / "tiny.onnx", m / "tiny.onnx", "--input", "x:1x3x16"]


@case("quantize-input-spec-no-colon", r"expected NAME:DIMS")
def _(m, tmp, out):
    return ["quantize", m / "tiny.onnx", "--input", "x", "-o", out / "q.onnx"]


# -- torch models ------------------------------------------------------------------------------

@case("export-missing-module", r"no_such_pkg")
def _(m, tmp, out):
    return ["export", "no_such_pkg.models:make", "--input", "x:1x3x16x16", "-o", out / "e.onnx"]


@case("export-missing-factory", r"nosuchfactory")
def _(m, tmp, out):
    return ["export", "trtcompress.zoo:nosuchfactory", "--input", "x:1x3x16x16", "-o", out / "e.onnx"]


@case("export-missing-file", r"not found|no such")
def _(m, tmp, out):
    return ["export", f"{tmp / 'nowhere.py'}:make", "--input", "x:1x3x16x16", "-o", out / "e.onnx"]


@case("export-file-raises", r"boom|failed")
def _(m, tmp, out):
    (tmp / "net.py").write_text("def make():\n    raise RuntimeError('boom')\n")
    return ["export", f"{tmp / 'net.py'}:make", "--input", "x:1x3x16x16", "-o", out / "e.onnx"]


@case("compress-missing-torch-module", r"no_such_pkg")
def _(m, tmp, out):
    return ["compress", "no_such_pkg:make", "--stages", "sparsify", "--runs-dir", out, "--name", "r", "--no-bench"]


@case("finetune-missing-teacher-module", r"no_such_pkg")
def _(m, tmp, out):
    return ["finetune", "--teacher", "no_such_pkg:make", "--transform", "lowrank:rule=flops,flop_fraction=0.5", "--data", "fashion-mnist", "-o", out / "f.pt"]


@case("finetune-data-not-found", r"training data .* is neither a built-in dataset")
def _(m, tmp, out):
    return ["finetune", "--teacher", "zoo:fashion_cnn", "--transform", "2to4", "--data", tmp / "nowhere", "-o", out / "f.onnx"]


@case("finetune-unknown-transform", r"unknown student transform 'bogus'; known: 2to4, lowrank")
def _(m, tmp, out):
    return ["finetune", "--teacher", "zoo:fashion_cnn", "--transform", "bogus", "--data", "fashion-mnist", "-o", out / "f.onnx"]


# -- output locations --------------------------------------------------------------------------

@case("quantize-output-is-directory", r"is a directory; give a file name inside it")
def _(m, tmp, out):
    return ["quantize", m / "tiny.onnx", "--calib", _npz(tmp / "c", x=_x()), "-o", out]


@case("sparsify-output-is-directory", r"is a directory; give a file name inside it")
def _(m, tmp, out):
    return ["sparsify", m / "tiny.onnx", "-o", out]


TORCH_CASES = {"finetune-data-not-found", "finetune-unknown-transform", "export-missing-module", "export-missing-factory", "export-missing-file", "export-file-raises", "compress-missing-torch-module", "finetune-missing-teacher-module"}


@pytest.mark.parametrize("name", [pytest.param(n, marks=pytest.mark.torch) if n in TORCH_CASES else n for n in CASES])
def test_catalogue(name, models, tmp_path, out_dir, bad):
    build, expect = CASES[name]
    work = tmp_path / "work"
    work.mkdir()
    bad(build(models, work, out_dir), expect)
