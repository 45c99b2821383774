"""Shared fixtures. TensorRT/GPU tests are skipped by one probe here; torch tests when torch is missing."""
from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from trtcompress._optional import available
from trtc_support import tiny_classifier


def _has_gpu() -> bool:
    if shutil.which("nvidia-smi") is None:
        return False
    return subprocess.run(["nvidia-smi", "-L"], capture_output=True).returncode == 0


HAS_TORCH = available("torch")
HAS_TRT = available("tensorrt")
HAS_GPU = _has_gpu()


def pytest_collection_modifyitems(config, items):
    skips = {
        "torch": (HAS_TORCH, "needs torch: pip install 'trtcompress[torch]' torch==2.13.0"),
        "trt": (HAS_TRT and HAS_GPU, "needs TensorRT and an NVIDIA GPU"),
        "gpu": (HAS_GPU, "needs an NVIDIA GPU"),
    }
    for item in items:
        for mark, (ok, why) in skips.items():
            if item.get_closest_marker(mark) is not None and not ok:
                item.add_marker(pytest.mark.skip(reason=why))


@pytest.fixture
def tiny_model(tmp_path: Path) -> Path:
    return tiny_classifier(tmp_path / "tiny.onnx")


@pytest.fixture(scope="session")
def efficientnet_onnx(tmp_path_factory) -> Path:
    """Pretrained EfficientNet-Lite0 exported once per session (dynamic batch)."""
    if not HAS_TORCH:
        pytest.skip("needs torch")
    from trtcompress.torch_export import ExportConfig, export

    out = tmp_path_factory.mktemp("effnet") / "efficientnet_lite0.onnx"
    export("trtcompress.zoo:efficientnet_lite0", out, ExportConfig(inputs=("x:1x3x224x224",)))
    return out
