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


# opt-in markers: left out of the default run (CI's, under 10 minutes on 2 cores) unless asked for
# with the option or named in -m; `--run-gpu` covers the `trt` tests too
OPT_IN = {"slow": "--run-slow", "large": "--run-large", "gpu": "--run-gpu", "trt": "--run-gpu"}


# per-test limits above the default (pyproject: timeout = 120) for tests that train or export
# real networks; a test's own @pytest.mark.timeout wins
LONGER_TIMEOUTS = {"slow": 900, "large": 900}
LONGER_TIMEOUT_PATHS = {"tests/finetune/": 600, "tests/zoo/test_train.py": 600, "tests/sparsity/test_real_models.py": 600}


def pytest_addoption(parser):
    g = parser.getgroup("trtcompress")
    g.addoption("--run-slow", action="store_true", help="also run tests marked slow (end-to-end on real models)")
    g.addoption("--run-large", action="store_true", help="also run tests marked large (models over 2 GB; ~5 GB of memory and disk)")
    g.addoption("--run-gpu", action="store_true", help="also run tests marked gpu or trt (they still skip without a GPU / TensorRT)")


def pytest_collection_modifyitems(config, items):
    skips = {
        "torch": (HAS_TORCH, "needs torch: pip install 'trtcompress[torch]' torch==2.13.0"),
        "trt": (HAS_TRT and HAS_GPU, "needs TensorRT and an NVIDIA GPU"),
        "gpu": (HAS_GPU, "needs an NVIDIA GPU"),
    }
    markexpr = config.getoption("markexpr", "") or ""
    root = Path(str(config.rootpath))
    for item in items:
        if item.get_closest_marker("timeout") is None:
            rel = Path(str(item.path)).relative_to(root).as_posix() if Path(str(item.path)).is_relative_to(root) else ""
            limits = [t for m, t in LONGER_TIMEOUTS.items() if item.get_closest_marker(m)]
            limits += [t for prefix, t in LONGER_TIMEOUT_PATHS.items() if rel.startswith(prefix)]
            if limits:
                item.add_marker(pytest.mark.timeout(max(limits)))
        for mark, option in OPT_IN.items():
            if item.get_closest_marker(mark) is not None and not config.getoption(option) and mark not in markexpr:
                item.add_marker(pytest.mark.skip(reason=f"opt-in: run with {option} (or -m {mark})"))
                break
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


@pytest.fixture(scope="module")
def fashion_dirs(tmp_path_factory):
    """Fashion-MNIST as .npz folders: 8 training images calibrate, 8 test images evaluate."""
    import numpy as np

    from trtcompress import zoo

    root = tmp_path_factory.mktemp("fashion")
    for split, name in (("train", "calib"), ("test", "eval")):
        x, _ = zoo.fashion_mnist(split, limit=8)
        (root / name).mkdir()
        for i in range(2):
            np.savez(root / name / f"{i}.npz", x=x[4 * i:4 * i + 4])
    return root
