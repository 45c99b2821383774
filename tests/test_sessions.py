"""One session factory: every ONNX Runtime session in the package comes from trtcompress.sessions,
so the same options give the same session whatever the model's form or the caller."""
from __future__ import annotations

import re
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest

import trtcompress
from trtcompress import weightless
from trtcompress.errors import ConfigError, MissingDependencyError, ModelError
from trtcompress.runners import RunnerOptions
from trtcompress.runners.onnxrt import make_session
from trtcompress.sessions import SessionConfig, open_session

PACKAGE = Path(trtcompress.__file__).parent


def test_the_factory_is_the_only_place_sessions_are_made():
    calls = {
        str(p.relative_to(PACKAGE)): len(re.findall(r"InferenceSession\(", p.read_text()))
        for p in PACKAGE.rglob("*.py")
    }
    assert {p: n for p, n in calls.items() if n} == {"sessions.py": 1}


def _entry(so, key: str) -> str | None:
    try:
        return so.get_session_config_entry(key)
    except Exception:  # not set: ONNX Runtime's default
        return None


def _settings(sess) -> dict:
    so = sess.get_session_options()
    return {
        "intra": so.intra_op_num_threads,
        "inter": so.inter_op_num_threads,
        "optimization": so.graph_optimization_level,
        "log": so.log_severity_level,
        "spinning": _entry(so, "session.intra_op.allow_spinning"),
        "providers": sess.get_providers(),
    }


def test_same_config_same_session_for_every_form_of_model(tiny_model, monkeypatch):
    import onnxruntime as ort

    config = SessionConfig(threads=1, optimization="basic", spinning=False)
    proto = onnx.load(str(tiny_model))
    x = np.random.default_rng(0).standard_normal((2, 3, 16, 16)).astype(np.float32)
    forms = {"path": tiny_model, "str": str(tiny_model), "bytes": proto.SerializeToString(), "proto": proto}
    sessions = {k: open_session(m, config) for k, m in forms.items()}
    monkeypatch.setattr(weightless, "LARGE_MODEL_BYTES", 0)  # the weightless path, weights fed with every run
    monkeypatch.setattr(weightless, "DETACH_BYTES", 64)
    sessions["large"] = open_session(proto, config)
    assert isinstance(sessions["large"], weightless.WeightFedSession)
    want = {"intra": 1, "inter": 1, "optimization": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC, "log": 3, "spinning": "0", "providers": ["CPUExecutionProvider"]}
    ref = sessions["path"].run(None, {"x": x})[0]
    for form, sess in sessions.items():
        assert _settings(sess) == want, form
        np.testing.assert_array_equal(sess.run(None, {"x": x})[0], ref)


def test_runner_calibration_and_defaults_go_through_the_factory(tiny_model):
    from trtcompress.quant.calibrate import CollectConfig, _session

    runner = make_session(str(tiny_model), RunnerOptions(threads=2, optimization="extended"))
    assert _settings(runner) == _settings(open_session(tiny_model, SessionConfig(threads=2, optimization="extended")))
    with _session(onnx.load(str(tiny_model)), [], [], None, CollectConfig(threads=1), {}) as calib:
        assert _settings(calib) == _settings(open_session(tiny_model, SessionConfig(threads=1, spinning=False)))
    # no threads given: ONNX Runtime's own choice, the same for every caller
    assert _settings(open_session(tiny_model)) == _settings(make_session(str(tiny_model), RunnerOptions()))


def test_errors_are_one_line_user_errors(tiny_model, tmp_path, monkeypatch):
    with pytest.raises(ConfigError, match="provider NoSuchProvider is not available here"):
        open_session(tiny_model, SessionConfig(providers=("NoSuchProvider",)))
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"not a model")
    with pytest.raises(ModelError, match=rf"^ONNX Runtime cannot load {re.escape(str(bad))}: [^\n]+$"):
        open_session(bad)
    with pytest.raises(ConfigError, match="threads must be >= 0"):
        SessionConfig(threads=-1)
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # as if onnxruntime were not installed
    with pytest.raises(MissingDependencyError, match="pip install onnxruntime"):
        open_session(tiny_model)


def test_zoo_evaluation_through_the_factory_reproduces_the_shipped_accuracy():
    import json

    from trtcompress import zoo
    from trtcompress.zoo.train import WEIGHTS, evaluate_onnx

    x, y = zoo.fashion_mnist("test")
    shipped = json.loads((WEIGHTS / "metrics.json").read_text())["fashion_cnn"]["test_accuracy_onnxruntime"]
    assert evaluate_onnx(zoo.onnx_path("fashion_cnn"), x, y) == shipped
