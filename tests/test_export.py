from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from trtcompress.errors import ConfigError, ModelError

pytestmark = pytest.mark.torch

MODEL_PY = """
import torch
from torch import nn

class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.emb = nn.Embedding(50, 8)
        self.fc = nn.Linear(8, 3)

    def forward(self, ids, scale):
        return self.fc(self.emb(ids).mean(1)) * scale

def make():
    torch.manual_seed(0)
    return Net()

def conv():
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 8 * 8, 2))
"""


@pytest.fixture
def model_file(tmp_path):
    p = tmp_path / "user_model.py"
    p.write_text(MODEL_PY)
    return p


def _dims(path, name):
    m = onnx.load(str(path))
    vi = next(i for i in m.graph.input if i.name == name)
    return [d.dim_param or d.dim_value for d in vi.type.tensor_type.shape.dim]


def test_export_from_file_factory_with_int_inputs(model_file, tmp_path):
    from trtcompress.torch_export import ExportConfig, export

    r = export(f"{model_file}:make", tmp_path / "m.onnx", ExportConfig(inputs=("ids:1x6:int64", "scale:1x1")))
    assert r.exporter == "dynamo" and r.fallback_reason is None
    assert r.check["random"]["max_abs"] < 1e-5
    assert _dims(r.path, "ids")[0] == "batch"  # dynamic batch by default
    sess = ort.InferenceSession(r.path)
    out = sess.run(None, {"ids": np.zeros((5, 6), np.int64), "scale": np.ones((5, 1), np.float32)})[0]
    assert out.shape == (5, 3)
    assert not (tmp_path / "m.onnx.data").exists()  # one file for a small model


def test_static_and_torchscript_exporter(model_file, tmp_path):
    from trtcompress.torch_export import ExportConfig, export

    r = export(f"{model_file}:conv", tmp_path / "s.onnx", ExportConfig(inputs=("x:2x3x8x8",), dynamic_batch=False, exporter="torchscript", opset=17))
    assert r.exporter == "torchscript" and _dims(r.path, "x") == [2, 3, 8, 8]
    assert r.check["random"]["max_abs"] < 1e-5


def test_saved_exported_program_and_torchscript(model_file, tmp_path):
    import torch

    from trtcompress.torch_export import ExportConfig, export, load_torch_model

    net = load_torch_model(f"{model_file}:conv").eval()
    x = torch.randn(2, 3, 8, 8)
    torch.export.save(torch.export.export(net, (x,)), tmp_path / "m.pt2")
    torch.jit.save(torch.jit.trace(net, (x,)), tmp_path / "m.ts")
    r1 = export(str(tmp_path / "m.pt2"), tmp_path / "a.onnx", ExportConfig(inputs=("x:2x3x8x8",), dynamic_batch=False))
    r2 = export(str(tmp_path / "m.ts"), tmp_path / "b.onnx", ExportConfig(inputs=("x:2x3x8x8",), dynamic_batch=False))
    assert r2.exporter == "torchscript"
    for r in (r1, r2):
        assert r.check["random"]["max_abs"] < 1e-5


def test_fallback_is_reported(model_file, tmp_path, monkeypatch):
    from trtcompress.torch_export import ExportConfig, exporter

    def broken(*a, **k):
        raise RuntimeError("dynamo cannot trace this")

    monkeypatch.setitem(exporter._EXPORTERS, "dynamo", broken)
    r = exporter.export(f"{model_file}:conv", tmp_path / "f.onnx", ExportConfig(inputs=("x:1x3x8x8",)))
    assert r.exporter == "torchscript" and "dynamo cannot trace this" in r.fallback_reason


@pytest.mark.parametrize("ref, match", [("nomodule_xyz:make", "cannot import"), ("missing.py:make", "not found"), ("{file}:nothing", "no attribute"), ("m.pt2", "not found")])
def test_bad_model_references(model_file, tmp_path, ref, match):
    from trtcompress.torch_export import load_torch_model

    with pytest.raises(ModelError, match=match):
        load_torch_model(ref.format(file=model_file))


def test_inputs_are_required(model_file, tmp_path):
    from trtcompress.torch_export import ExportConfig, export

    with pytest.raises(ConfigError, match="--input"):
        export(f"{model_file}:conv", tmp_path / "x.onnx", ExportConfig())
