"""Load a torch model from a factory reference or a saved file."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from .._optional import require
from ..errors import ModelError
from ..userref import load_reference

_SAVED = {".pt2": "exported", ".ts": "torchscript", ".pt": "torchscript", ".pth": "torchscript", ".torchscript": "torchscript"}


def load_torch_model(ref: str) -> Any:
    """``pkg.module:factory``, ``path/file.py:factory``, ``model.pt2`` (ExportedProgram) or a TorchScript file.

    Returns an ``nn.Module``, a ``ScriptModule`` or an ``ExportedProgram``.
    """
    torch = require("torch", "loading a torch model")
    path = Path(ref)
    if path.suffix in _SAVED and ":" not in ref:
        if not path.is_file():
            raise ModelError(f"model file not found: {path}")
        try:
            if _SAVED[path.suffix] == "exported":
                return torch.export.load(str(path))
            return torch.jit.load(str(path), map_location="cpu")
        except Exception as e:
            raise ModelError(f"{path} is not a loadable {'ExportedProgram' if path.suffix == '.pt2' else 'TorchScript'} file ({type(e).__name__}); save it with torch.export.save or torch.jit.save") from e
    factory = load_reference(ref, "model", ModelError)
    if callable(factory) and not isinstance(factory, torch.nn.Module):
        try:
            model = factory()
        except Exception as e:  # the user's own code: name it, keep the traceback for --verbose
            raise ModelError(f"{ref} raised {type(e).__name__}: {str(e).strip().splitlines()[0] if str(e).strip() else ''}; fix the factory (--verbose shows the traceback)") from e
    else:
        model = factory
    if not isinstance(model, (torch.nn.Module, torch.export.ExportedProgram)):
        raise ModelError(f"{ref} returned {type(model).__name__}, not a torch.nn.Module")
    return model
