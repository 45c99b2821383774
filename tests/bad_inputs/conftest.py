"""Fixtures for the bad-input catalogue: real models built in code and a driver for the CLI that
checks what every bad input must give: a non-zero exit, one line on stderr naming the problem and
the fix, no traceback, and an output folder left exactly as it was."""
from __future__ import annotations

import hashlib
import re
import shutil
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from trtcompress.cli.main import main
from trtc_support import tiny_classifier


def snapshot(folder: Path) -> dict[str, str]:
    """Every entry under ``folder`` (hidden ones too) with a digest of its bytes."""
    out = {}
    for p in sorted(folder.rglob("*")):
        rel = str(p.relative_to(folder))
        out[rel] = "dir" if p.is_dir() else hashlib.sha256(p.read_bytes()).hexdigest()
    return out


class BadRun:
    """Runs ``main(argv)`` in-process and checks the bad-input contract."""

    def __init__(self, capsys, out: Path):
        self.capsys, self.out = capsys, out

    def __call__(self, argv: list[str], expect: str, code: int | None = None) -> str:
        before = snapshot(self.out)
        self.capsys.readouterr()
        rc = main([str(a) for a in argv])
        cap = self.capsys.readouterr()
        # what a terminal shows: a progress bar is redrawn in place with \r and cleared at the end
        shown = [ln.split("\r")[-1] for ln in cap.err.split("\n")]
        shown = [ln for ln in shown if ln.strip()]
        assert rc != 0, f"exit 0 for a bad input; stdout: {cap.out[-500:]}"
        if code is not None:
            assert rc == code
        assert "Traceback" not in cap.err, cap.err
        verb = next(a for a in argv if not str(a).startswith("-"))
        errors = [ln for ln in shown if ln.startswith(f"trtcompress {verb}: error: ")]
        assert len(errors) == 1 and shown[-1] == errors[0], f"expected one error line, last on stderr, got:\n{cap.err}"
        # progress lines ("loading ...") may come before it; warnings and other errors may not
        assert not [ln for ln in shown[:-1] if re.search(r"warn|error|exception", ln, re.I)], cap.err
        line = errors[0]
        assert re.search(expect, line, re.I), f"{expect!r} not in {line!r}"
        assert snapshot(self.out) == before, "the output folder changed"
        return line


@pytest.fixture
def out_dir(tmp_path: Path) -> Path:
    """An output folder holding earlier artifacts that a failed run must leave intact."""
    out = tmp_path / "out"
    out.mkdir()
    tiny_classifier(out / "earlier.onnx", seed=7)
    (out / "earlier.json").write_text('{"kept": true}\n')
    return out


@pytest.fixture
def bad(capsys, out_dir: Path) -> BadRun:
    return BadRun(capsys, out_dir)


@pytest.fixture(scope="session")
def models(tmp_path_factory) -> Path:
    """A folder of real small models, built once per session."""
    d = tmp_path_factory.mktemp("models")
    tiny_classifier(d / "tiny.onnx")
    tiny_classifier(d / "static.onnx", dynamic=False)
    # the same network with its weights in an external .data file
    m = onnx.load(str(d / "tiny.onnx"))
    ext = d / "ext"
    ext.mkdir()
    onnx.save_model(m, str(ext / "tiny.onnx"), save_as_external_data=True, all_tensors_to_one_file=True, location="tiny.onnx.data", size_threshold=0)
    # a model with no float weights: y = x + x
    g = helper.make_graph([helper.make_node("Add", ["x", "x"], ["y"])], "noweights",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 8])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 8])])
    _save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]), d / "noweights.onnx")
    # same network as tiny, different input name / input shape
    m2 = onnx.load(str(d / "tiny.onnx"))
    m2.graph.input[0].name = "image"
    m2.graph.node[0].input[0] = "image"
    _save(m2, d / "renamed.onnx")
    m3 = onnx.load(str(d / "tiny.onnx"))
    m3.graph.input[0].type.tensor_type.shape.dim[2].dim_value = 32
    m3.graph.input[0].type.tensor_type.shape.dim[3].dim_value = 32
    _save(m3, d / "bigger.onnx")
    # an op ONNX Runtime does not know (custom domain)
    w = numpy_helper.from_array(np.ones((4, 8), np.float32), "w")
    g = helper.make_graph([helper.make_node("MatMul", ["x", "w"], ["h"], name="mm"),
                           helper.make_node("FancyActivation", ["h"], ["y"], domain="com.example")],
                          "customop", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 8])], [w])
    _save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("com.example", 1)]), d / "customop.onnx", check=False)
    # a default-domain opset newer than any ONNX release
    m4 = onnx.load(str(d / "tiny.onnx"))
    m4.opset_import[0].version = 99
    _save(m4, d / "opset99.onnx", check=False)
    # an opset older than the ops it uses know
    m5 = onnx.load(str(d / "tiny.onnx"))
    m5.opset_import[0].version = 1
    _save(m5, d / "opset1.onnx", check=False)
    return d


def _save(model: onnx.ModelProto, path: Path, check: bool = True) -> None:
    model.ir_version = 8
    if check:
        onnx.checker.check_model(model)
    onnx.save(model, str(path))


def copy_model(models: Path, name: str, dest: Path) -> Path:
    """A private copy of a session model (and its folder, for external data) to damage."""
    src = models / name
    if src.parent.name == "ext" or name.startswith("ext/"):
        shutil.copytree(src.parent, dest / "ext")
        return dest / "ext" / src.name
    shutil.copy(src, dest / src.name)
    return dest / src.name
