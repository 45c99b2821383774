"""Write the fine-tuned student as ONNX.

TEMPORARY: a minimal torch.onnx.export call until the project's exporter (trtcompress.export)
is available on this branch; switch ``export_student`` to it then.
"""
from __future__ import annotations

import tempfile
from pathlib import Path

from .._optional import require
from ..errors import ModelError
from ..model_io import load_model, save_model

__all__ = ["export_student"]


def export_student(model, example_input, path: str | Path, opset: int = 17) -> Path:
    """Export ``model`` (eval mode) with a dynamic batch dimension; written atomically."""
    torch = require("torch", "ONNX export")
    model.eval()
    with tempfile.TemporaryDirectory() as tmp:
        raw = Path(tmp) / "model.onnx"
        try:
            torch.onnx.export(
                model, (example_input,), str(raw), input_names=["x"], output_names=["logits"],
                dynamic_axes={"x": {0: "batch"}, "logits": {0: "batch"}}, opset_version=opset, dynamo=False,
            )
        except Exception as e:
            raise ModelError(f"torch.onnx.export failed for the student: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}") from e
        return save_model(load_model(raw), path)
