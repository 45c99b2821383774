"""Fixtures for the bad-input catalogue: real small models built in code, an output folder with
earlier artifacts, and the CLI driver of :mod:`badinput_support`."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from badinput_support import BadRun, _save
from trtc_support import tiny_classifier


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


