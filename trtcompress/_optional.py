"""The one place that imports optional heavy dependencies, with a clear message when missing.

``import trtcompress`` must not import torch, tensorrt or CUDA libraries, so every use goes
through :func:`require` at call time.
"""
from __future__ import annotations

import importlib
from types import ModuleType

from .errors import MissingDependencyError

__all__ = ["require", "available"]

# module -> extra that provides it
_EXTRAS = {
    "torch": "torch",
    "onnxscript": "torch",
    "tensorrt": "trt",
    "cuda": "trt",  # cuda-python>=12: cuda.bindings.runtime (12.6+) or cuda.cudart
    "pycuda": "trt",
    "ray": "ray",
    "PIL": "core",
}


def require(module: str, purpose: str = "") -> ModuleType:
    """Import ``module`` or raise :class:`MissingDependencyError` naming the extra to install."""
    try:
        return importlib.import_module(module)
    except ImportError as e:
        root = module.split(".")[0]
        extra = _EXTRAS.get(root)
        what = f" for {purpose}" if purpose else ""
        if extra == "torch":
            hint = "pip install 'trtcompress[torch]' torch==2.13.0"
        elif extra in (None, "core"):
            hint = f"pip install {root}"
        elif root == "cuda":
            hint = "pip install 'trtcompress[trt]' (it brings cuda-python>=12; or: pip install 'cuda-python>=12')"
        else:
            hint = f"pip install 'trtcompress[{extra}]'"
        raise MissingDependencyError(f"{module} is needed{what} but is not installed ({e}); run: {hint}") from e


def available(module: str) -> bool:
    """True when ``module`` imports (without raising)."""
    try:
        importlib.import_module(module)
    except Exception:
        return False
    return True
