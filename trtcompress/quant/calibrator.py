"""A TensorRT (<= 10) entropy calibrator that serves a cache and never asks for data.

TensorRT calls ``read_calibration_cache`` first; when it returns a valid cache for this
TensorRT version, it takes the scales from it and calibration does not run, so a Jetson builds
INT8 engines without the calibration data or the time to run it. ``get_batch`` returns None in
case TensorRT rejects the cache, which ends calibration instead of feeding anything.
"""
from __future__ import annotations

import os
from pathlib import Path

from .._optional import require
from ..errors import ConfigError, DataError
from .cache import format_cache, read_cache, trt_version_number
from .table import CalibrationTable

__all__ = ["cache_calibrator"]


def cache_calibrator(cache: CalibrationTable | str | os.PathLike, batch_size: int = 1):
    """An ``IInt8EntropyCalibrator2`` serving ``cache`` (a table, or a cache file) to TensorRT.

    A table is written in this TensorRT's own cache format; a cache file must have been written
    for this TensorRT version (TensorRT would silently ignore it otherwise), else ConfigError.
    """
    trt = require("tensorrt", "serving a calibration cache to TensorRT")
    version = trt.__version__
    number = trt_version_number(version)  # refuses TensorRT 11
    if isinstance(cache, CalibrationTable):
        text = format_cache(cache, version)
    else:
        path = Path(cache)
        table = read_cache(path)
        if table.details.get("trt_version_number") != number:
            raise ConfigError(
                f"{path} was written for TensorRT version number {table.details.get('trt_version_number')}, this is TensorRT {version} "
                f"({number}); TensorRT would ignore it: rewrite it with trt_version={version}"
            )
        text = path.read_text()
    if not text.strip():
        raise DataError("empty calibration cache")
    payload = text.encode()

    class CacheCalibrator(trt.IInt8EntropyCalibrator2):
        def __init__(self) -> None:
            trt.IInt8EntropyCalibrator2.__init__(self)

        def get_batch_size(self) -> int:
            return batch_size

        def get_batch(self, names, p_str=None):  # noqa: D401 - TensorRT's signature
            return None

        def read_calibration_cache(self) -> bytes:
            return payload

        def write_calibration_cache(self, cache) -> None:
            return None

    if batch_size < 1:
        raise ConfigError(f"batch_size must be >= 1, got {batch_size}")
    return CacheCalibrator()
