"""trtcompress: compress models for NVIDIA inference (2:4 sparsity, low-rank, INT8 Q/DQ, TensorRT).

Importing the package is light: torch, tensorrt and CUDA libraries are imported only by the
functions that need them. The public API is loaded on first attribute access.
"""
from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

# public name -> module that defines it
_API = {
    "UserError": ".errors",
    "ModelError": ".errors",
    "DataError": ".errors",
    "ConfigError": ".errors",
    "Config": ".config",
    "StageResult": ".stage",
    "register_stage": ".stage",
    "Pipeline": ".pipeline",
    "RunDir": ".rundir",
    "load_model": ".model_io",
    "save_model": ".model_io",
    "check_model": ".model_io",
    "InputSpec": ".specs",
    "parse_input_spec": ".specs",
    "make_runner": ".runners",
    "RunnerOptions": ".runners",
    "open_source": ".data",
    "open_data": ".data",
    "DataOptions": ".data",
    "open_session": ".sessions",
    "SessionConfig": ".sessions",
    "model_inputs": ".data",
    "PreprocessConfig": ".data",
    "compare": ".comparison",
    "CompareConfig": ".comparison",
    "bench": ".benchmark",
    "BenchConfig": ".benchmark",
    "export": ".torch_export",
    "ExportConfig": ".torch_export",
    "compress": ".job",
    "CompressConfig": ".job",
    "LowRankConfig": ".lowrank",
    "factorize_onnx": ".lowrank",
    "FinetuneConfig": ".finetune",
}

__all__ = sorted(_API) + ["__version__"]


def __getattr__(name: str) -> Any:
    if name in _API:
        value = getattr(importlib.import_module(_API[name], __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'trtcompress' has no attribute {name!r}")


def __dir__() -> list[str]:
    return __all__
