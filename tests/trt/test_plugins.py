"""Plugin loading and the CPU reference pattern of the example plugin (plugins/scaled_tanh)."""
from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from trtcompress.errors import ConfigError
from trtcompress.trt.plugins import load_plugins, resolve_plugins, split_plugins

ROOT = Path(__file__).resolve().parents[2]


def _reference_module():
    spec = importlib.util.spec_from_file_location("scaled_tanh_reference", ROOT / "plugins/scaled_tanh/reference.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_reference_function_runs_in_onnx_runtime():
    ref = _reference_module()
    model = ref.example_model(alpha=0.5)
    onnx.checker.check_model(model, full_check=True)
    x = np.random.default_rng(0).standard_normal((4, 16)).astype(np.float32) * 3
    got = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    w = onnx.numpy_helper.to_array(model.graph.initializer[0])
    np.testing.assert_allclose(got, ref.reference(x @ w, 0.5), rtol=1e-5, atol=1e-6)
    assert np.abs(got).max() <= 0.5 + 1e-6  # alpha really scales
    trt_model = ref.for_tensorrt(model)
    (plugin_node,) = [n for n in trt_model.graph.node if n.op_type == "ScaledTanh" and n.domain == "trtcompress"]
    assert not trt_model.functions
    assert {a.name: onnx.helper.get_attribute_value(a) for a in plugin_node.attribute} == {"alpha": 0.5, "plugin_namespace": b"trtcompress", "plugin_version": b"1"}


def test_plugins_resolve_by_name_path_and_kind(tmp_path, monkeypatch):
    (found,) = resolve_plugins(["scaled_tanh"])
    assert found == str(ROOT / "plugins/scaled_tanh/trt_plugin.py")
    folder = tmp_path / "mine"
    folder.mkdir()
    (folder / "libmine.so").write_bytes(b"")
    (folder / "trt_plugin.py").write_text("")
    monkeypatch.setenv("TRTCOMPRESS_PLUGIN_PATH", str(tmp_path))
    libs, pys = split_plugins(resolve_plugins(["mine"]))
    assert libs == (str(folder / "libmine.so"),) and pys == (str(folder / "trt_plugin.py"),)
    with pytest.raises(ConfigError, match="not found"):
        resolve_plugins([str(tmp_path / "nope.so")])
    with pytest.raises(ConfigError, match="neither a file nor a folder"):
        resolve_plugins(["no_such_plugin"])
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConfigError, match="holds no lib"):
        resolve_plugins(["empty"])


def test_python_plugins_are_imported_once(tmp_path):
    plugin = tmp_path / "trt_plugin.py"
    plugin.write_text("import sys\nsys.modules.setdefault('_plugin_count', []).append(1)\n")
    sys.modules.pop("_plugin_count", None)
    load_plugins([str(plugin)])
    load_plugins([str(plugin)])
    assert sys.modules["_plugin_count"] == [1]


def test_a_library_that_does_not_load_is_an_error(tmp_path):
    bad = tmp_path / "libbad.so"
    bad.write_bytes(b"not an ELF file")
    with pytest.raises(ConfigError, match="cannot load plugin library"):
        load_plugins([str(bad)])


@pytest.mark.trt
def test_plugin_engine_matches_its_cpu_reference(tmp_path):
    """The Python plugin built into an engine against the ONNX function ONNX Runtime runs."""
    import tensorrt

    from trtcompress.trt.build import build_engine
    from trtcompress.trt.config import BuildConfig
    from trtcompress.trt.version import parse_version

    if not parse_version(tensorrt.__version__).python_plugins or not __import__("trtcompress._optional", fromlist=["x"]).available("torch"):
        pytest.skip("the example plugin needs TensorRT 10.6+ and torch")
    ref = _reference_module()
    model = ref.example_model(alpha=0.5)
    onnx.save(model, tmp_path / "ref.onnx")
    onnx.save(ref.for_tensorrt(model), tmp_path / "plugin.onnx")
    result = build_engine(tmp_path / "plugin.onnx", tmp_path / "plugin.engine", BuildConfig(plugins=("scaled_tanh",)))
    assert "scaled_tanh" in json.dumps(result.plan.plugins)
    x = np.random.default_rng(0).standard_normal((8, 16)).astype(np.float32)
    from trtcompress.runners import make_runner

    with make_runner(tmp_path / "plugin.engine", "trt") as trt_runner:
        got = trt_runner.infer({"x": x})["y"]
    want = ort.InferenceSession(str(tmp_path / "ref.onnx"), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)
