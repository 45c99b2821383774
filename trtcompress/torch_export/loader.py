"""Load a torch model from a factory reference or a saved file."""
from __future__ import annotations

import importlib
import importlib.util
import sys
from pathlib import Path
from typing import Any

from .._optional import require
from ..errors import ModelError

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
    target, sep, attr = ref.rpartition(":")
    if not sep or not target or not attr:
        raise ModelError(f"cannot load {ref!r}: give pkg.module:factory, path/file.py:factory, a .pt2 ExportedProgram or a TorchScript file")
    if target.endswith(".py"):
        file = Path(target)
        if not file.is_file():
            raise ModelError(f"model file not found: {file}")
        spec = importlib.util.spec_from_file_location(f"_trtcompress_user_{file.stem}", file)
        module = importlib.util.module_from_spec(spec)
        sys.path.insert(0, str(file.parent.resolve()))
        try:
            spec.loader.exec_module(module)
        except Exception as e:
            raise ModelError(f"importing {file} failed: {type(e).__name__}: {e}") from e
        finally:
            sys.path.pop(0)
    else:
        try:
            module = importlib.import_module(target)
        except ImportError as e:
            raise ModelError(f"cannot import module {target!r} ({e}); check the name and that it is installed") from e
    factory = getattr(module, attr, None)
    if factory is None:
        raise ModelError(f"{target} has no attribute {attr!r}")
    model = factory() if callable(factory) and not isinstance(factory, torch.nn.Module) else factory
    if not isinstance(model, (torch.nn.Module, torch.export.ExportedProgram)):
        raise ModelError(f"{ref} returned {type(model).__name__}, not a torch.nn.Module")
    return model
