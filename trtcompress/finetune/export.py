"""Write the fine-tuned student as ONNX through the project's exporter (``trtcompress.torch_export``)."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from ..torch_export import ExportConfig, export_module

__all__ = ["export_student"]


def export_student(model, example_input, path: str | Path, opset: int = 18) -> Path:
    """Export ``model`` (eval mode) with a dynamic batch; the shape of ``example_input`` (one
    sample, batch dimension included) names the input ``x``. Returns the written path."""
    return Path(export_student_result(model, example_input, path, opset).path)


def export_student_result(model, example_input, path: str | Path, opset: int = 18) -> Any:
    """As :func:`export_student`, returning the exporter's result (exporter used, check errors)."""
    dims = "x".join(str(int(d)) for d in example_input.shape)
    dtype = str(example_input.dtype).removeprefix("torch.")
    spec = f"x:{dims}" if dtype == "float32" else f"x:{dims}:{dtype}"
    return export_module(model.eval(), path, ExportConfig(inputs=(spec,), opset=opset))
