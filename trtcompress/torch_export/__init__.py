"""Torch -> ONNX export with a check against torch.

``export`` loads the model (``pkg.module:factory``, ``path/file.py:factory``, a saved
ExportedProgram ``.pt2`` or a TorchScript file), exports it with the dynamo exporter (falling back
to the TorchScript exporter, and saying so), makes the batch dimension dynamic unless asked not to,
and measures the largest absolute and relative error of ONNX Runtime against torch.
"""
from __future__ import annotations

from .config import ExportConfig, ExportResult
from .exporter import export, export_module
from .loader import load_torch_model

__all__ = ["ExportConfig", "ExportResult", "export", "export_module", "load_torch_model"]
