"""Exports for TensorRT 8.6 come out at opset 17, with ReduceMean's axes as the attribute its parser reads."""
from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from trtcompress.job import CompressConfig, compress
from trtcompress.torch_export.config import ExportConfig
from trtcompress.trt.opset import default_opset

pytestmark = pytest.mark.torch

MODEL_PY = """
import torch
from torch import nn

class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 16, 3, padding=1)
        self.fc = nn.Linear(16, 4)

    def forward(self, x):
        return self.fc(torch.relu(self.conv(x)).mean(dim=(2, 3)))

def net():
    torch.manual_seed(0)
    return Net().eval()
"""


def _reduce_means(path):
    return [n for n in onnx.load(str(path)).graph.node if n.op_type == "ReduceMean"]


@pytest.fixture
def model_file(tmp_path):
    p = tmp_path / "user_model.py"
    p.write_text(MODEL_PY)
    return p


def test_export_for_86_writes_opset_17_that_matches_torch(model_file, tmp_path, capsys):
    from trtcompress.cli.main import main

    torch = pytest.importorskip("torch")
    out = tmp_path / "m.onnx"
    assert main(["export", f"{model_file}:net", "-o", str(out), "--input", "x:2x3x8x8", "--target-trt", "8.6"]) == 0
    assert default_opset(onnx.load(str(out))) == 17
    assert all(len(n.input) == 1 for n in _reduce_means(out))  # axes as the attribute
    x = np.random.default_rng(0).standard_normal((2, 3, 8, 8)).astype(np.float32)
    import importlib.util

    spec = importlib.util.spec_from_file_location("user_model_ref", model_file)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    with torch.no_grad():
        ref = mod.net()(torch.from_numpy(x)).numpy()
    got = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    np.testing.assert_allclose(got, ref, atol=1e-5)
    capsys.readouterr()
    assert main(["export", f"{model_file}:net", "-o", str(out), "--input", "x:2x3x8x8", "--target-trt", "8.6", "--opset", "18"]) == 2
    assert "newer than TensorRT 8.6 parses" in capsys.readouterr().err


def test_compress_of_a_torch_model_exports_for_the_target(model_file, tmp_path):
    config = CompressConfig(model=f"{model_file}:net", export=ExportConfig(inputs=("x:2x3x8x8",)), target_trt="8.6", skip_bench=True,
                            data="random:2", runs_dir=str(tmp_path), name="t")
    result = compress(config)
    original = result.run_dir / "artifacts" / "original.onnx"
    assert default_opset(onnx.load(str(original))) == 17 and all(len(n.input) == 1 for n in _reduce_means(original))
    assert "exported at opset 17" in result.report["tensorrt"]["opset"]
    assert result.report["tensorrt"]["engine"]["built"] in (True, False)
