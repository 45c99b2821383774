"""The JSON written beside every engine (``model.engine.json``) and the check made before loading one.

An engine runs only on the TensorRT version that built it (unless built version-compatible: then
that version or newer of the same major) and on the GPU architecture it was built for (unless
hardware-compatible: then any Ampere or newer). Deserialising a mismatched engine fails deep in
TensorRT or, worse, works slowly; the sidecar lets us refuse it first with a one-line reason.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
from pathlib import Path
from typing import Any

from ..errors import ModelError
from .version import parse_version

__all__ = ["GpuInfo", "sidecar_path", "file_sha256", "make_sidecar", "read_sidecar", "check_sidecar", "input_source", "SIDECAR_FORMAT"]

SIDECAR_FORMAT = 1
log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class GpuInfo:
    name: str
    compute_capability: str  # "8.7"
    total_memory_bytes: int = 0

    @property
    def sm(self) -> tuple[int, int]:
        major, _, minor = self.compute_capability.partition(".")
        return int(major), int(minor or 0)


def sidecar_path(engine_path: str | os.PathLike) -> Path:
    return Path(f"{engine_path}.json")


def file_sha256(path: str | os.PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def make_sidecar(plan_dict: dict[str, Any], trt_version: str, gpu: GpuInfo, onnx_path: str | os.PathLike, onnx_sha256: str, report: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "format": SIDECAR_FORMAT,
        "tensorrt_version": trt_version,
        "gpu": {"name": gpu.name, "compute_capability": gpu.compute_capability},
        "precisions": plan_dict.get("precisions"),
        "profiles": plan_dict.get("profiles"),
        "build_options": plan_dict,
        "source_onnx": {"path": str(onnx_path), "sha256": onnx_sha256},
        "report": report,
    }


def read_sidecar(engine_path: str | os.PathLike) -> dict[str, Any] | None:
    path = sidecar_path(engine_path)
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise ModelError(f"{path} is not a readable engine sidecar ({e}); rebuild the engine or delete the file") from e
    if not isinstance(data, dict) or "tensorrt_version" not in data:
        raise ModelError(f"{path} is not an engine sidecar (no tensorrt_version); rebuild the engine or delete the file")
    return data


def check_sidecar(engine_path: str | os.PathLike, trt_version: str, gpu: GpuInfo | None) -> dict[str, Any] | None:
    """Refuse an engine built for another TensorRT or GPU (:class:`ModelError`, one line); a
    missing sidecar logs a warning and lets TensorRT try. Returns the sidecar."""
    data = read_sidecar(engine_path)
    if data is None:
        log.warning("%s has no sidecar %s: cannot check its TensorRT version and GPU before loading; trying anyway", engine_path, sidecar_path(engine_path).name)
        return None
    options = data.get("build_options") or {}
    built, here = parse_version(data["tensorrt_version"], supported_only=False), parse_version(trt_version, supported_only=False)
    if options.get("version_compatible"):
        ok = here.major == built.major and here >= built
    else:
        ok = here == built
    if not ok:
        raise ModelError(
            f"{engine_path} was built with TensorRT {data['tensorrt_version']}, this is TensorRT {trt_version}; "
            f"rebuild it here from {(data.get('source_onnx') or {}).get('path', 'its ONNX')} (trtcompress build)"
        )
    built_gpu = data.get("gpu") or {}
    if gpu is not None and built_gpu.get("compute_capability"):
        cc = built_gpu["compute_capability"]
        hw = options.get("hardware_compatibility", "none")
        if hw == "ampere+":
            fits = gpu.sm >= (8, 0)
        else:
            fits = cc == gpu.compute_capability
        if not fits:
            raise ModelError(
                f"{engine_path} was built for {built_gpu.get('name')} (compute capability {cc}), this GPU is {gpu.name} "
                f"({gpu.compute_capability}); rebuild it on this machine (trtcompress build)"
            )
        if built_gpu.get("name") != gpu.name and hw == "none":
            log.warning("%s was built on %s, running on %s (same compute capability): tactics were timed on the other GPU", engine_path, built_gpu.get("name"), gpu.name)
    return data


def input_source(model: str | os.PathLike) -> Path:
    """The ONNX that describes ``model``'s inputs: itself, or for an engine the ONNX its sidecar names."""
    path = Path(model)
    if path.suffix not in (".engine", ".plan", ".trt"):
        return path
    data = read_sidecar(path)
    source = Path((data or {}).get("source_onnx", {}).get("path", ""))
    if data is None or not source.is_file():
        raise ModelError(f"cannot tell the inputs of {path}: its sidecar {sidecar_path(path).name} is missing or names no existing ONNX; bench the ONNX or rebuild the engine with 'trtcompress build'")
    return source
