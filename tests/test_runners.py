from __future__ import annotations

import numpy as np
import pytest

from trtcompress.comparison import CompareConfig, compare_runners
from trtcompress.data import model_inputs, open_source
from trtcompress.errors import ConfigError, ModelError
from trtcompress.runners import RunnerOptions, make_runner, registered_backends


def test_backends_are_registered():
    assert {"onnxrt", "trt"} <= set(registered_backends())
    with pytest.raises(ConfigError, match="unknown backend"):
        make_runner("m.onnx", "tvm")


def test_onnxrt_runner_interface(tiny_model):
    runner = make_runner(tiny_model, options=RunnerOptions(threads=1, optimization="basic"))
    with runner:
        meta = runner.get_input_metadata(use_numpy_dtypes=False)  # Polygraphy DataTypes (numpy's are deprecated)
        assert list(meta.keys()) == ["x"] and meta["x"].dtype.numpy() == np.float32
        out = runner.infer({"x": np.zeros((2, 3, 16, 16), np.float32)})
        assert out["logits"].shape == (2, 5) and runner.last_inference_time() > 0


def test_unavailable_provider_is_a_user_error(tiny_model):
    with pytest.raises(ConfigError, match="not available"):
        with make_runner(tiny_model, options=RunnerOptions(providers=("no-such-provider",))):
            pass


def test_model_that_onnxruntime_rejects(tmp_path):
    import onnx
    from onnx import TensorProto, helper

    node = helper.make_node("NoSuchOp", ["x"], ["y"], domain="com.example")
    g = helper.make_graph([node], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])], [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("com.example", 1)])
    onnx.save(m, str(tmp_path / "m.onnx"))
    with pytest.raises(ModelError, match="ONNX Runtime cannot load"):
        with make_runner(tmp_path / "m.onnx"):
            pass


@pytest.mark.trt
def test_tensorrt_matches_onnxruntime(tiny_model):
    src = open_source("random:2", model_inputs(tiny_model))
    base = make_runner(tiny_model, "onnxrt")
    trt = make_runner(tiny_model, "trt")

    r = compare_runners(base, trt, src, CompareConfig(atol=1e-3, rtol=1e-3))
    assert r.passed, r.failures
