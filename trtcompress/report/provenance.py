"""What it takes to reproduce a run: the installed versions of the packages it can use.

Versions come from the installed distributions' metadata (``importlib.metadata``), so nothing
heavy (torch, TensorRT) is imported to learn them.
"""
from __future__ import annotations

import importlib.metadata as md
import platform

__all__ = ["PACKAGES", "versions"]

# distributions whose version can change a run's result or speed; those not installed are left out
PACKAGES = ("trtcompress", "numpy", "onnx", "onnxruntime", "onnxruntime-gpu", "onnx-ir", "ml_dtypes", "polygraphy",
            "torch", "onnxscript", "tensorrt", "cuda-python", "pillow")


def versions() -> dict[str, str]:
    """``{"python": ..., distribution: version}`` for each of :data:`PACKAGES` that is installed."""
    out = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            out[name] = md.version(name)
        except md.PackageNotFoundError:
            continue
    return out
