"""TensorRT calibration cache (text): the same amax table, for implicit INT8 on TensorRT <= 10.

Format (what ``IInt8EntropyCalibrator2`` writes and reads back)::

    TRT-<version number>-EntropyCalibration2
    <tensor name>: <8 hex digits: big-endian float32 bits of scale = amax / 127>

TensorRT silently ignores a cache whose header does not name its own version and algorithm, so
the version number must be the one of the TensorRT that builds the engine (on a Jetson: its
JetPack's). TensorRT 11 removed implicit INT8 (calibrators, the INT8 builder flag): there the
explicit Q/DQ model is the only way, and asking for a cache is an error.
"""
from __future__ import annotations

import math
import os
import re
import struct
from pathlib import Path

from ..errors import DataError
from ..fileio import write_text
from ..trt.version import parse_version
from .table import CalibrationTable

__all__ = ["trt_version_number", "format_cache", "parse_cache", "write_cache", "read_cache", "ALGORITHM"]

ALGORITHM = "EntropyCalibration2"
_HEADER = re.compile(r"^TRT-(\d+)-(\w+)$")


def trt_version_number(version: str) -> int:
    """TensorRT's own encoding: 8.5.2 -> 8502 (7.x/8.x), 10.3.0 -> 100300 (10.x); refuses 11.x."""
    return parse_version(version, supported_only=False).cache_version_number


def scale_hex(amax: float) -> str:
    """The 8 hex digits TensorRT stores for a tensor: float32 bits of ``amax / 127``, big-endian."""
    scale = amax / 127.0
    if not (scale > 0 and math.isfinite(scale)):
        raise DataError(f"amax must be positive and finite to write a calibration cache, got {amax}")
    return struct.pack(">f", scale).hex()


def format_cache(table: CalibrationTable, trt_version: str = "10.3.0") -> str:
    """The cache text for ``table`` as TensorRT ``trt_version`` expects it."""
    lines = [f"TRT-{trt_version_number(trt_version)}-{ALGORITHM}"]
    for name, amax in table.amax.items():
        if len(f"{name}:".splitlines()) != 1:  # \r, \v, \x1c-\x1e, \x85, \u2028... end a line too
            raise DataError(f"tensor name {name!r} contains a line break; it cannot be written to a calibration cache: rename the tensor")
        lines.append(f"{name}: {scale_hex(amax)}")
    return "\n".join(lines) + "\n"


def write_cache(table: CalibrationTable, path: str | os.PathLike, trt_version: str = "10.3.0") -> Path:
    """Write the cache atomically (no half-written file that TensorRT might read)."""
    return write_text(path, format_cache(table, trt_version))


def parse_cache(text: str, source: str = "calibration cache") -> CalibrationTable:
    """A cache's text back into a table (``amax = scale * 127``); the header goes into ``details``."""
    lines = [ln.rstrip("\r") for ln in text.splitlines()]
    lines = [ln for ln in lines if ln.strip()]
    if not lines:
        raise DataError(f"{source} is empty")
    head = _HEADER.match(lines[0].strip())
    if not head:
        raise DataError(f"{source}: first line {lines[0][:60]!r} is not a TensorRT cache header (TRT-<version>-<algorithm>)")
    amax: dict[str, float] = {}
    for n, line in enumerate(lines[1:], start=2):
        name, sep, value = line.rpartition(":")
        value = value.strip()
        if not sep or not name or not re.fullmatch(r"[0-9a-fA-F]{8}", value):
            raise DataError(f"{source}, line {n}: expected '<tensor name>: <8 hex digits>', got {line[:80]!r}")
        scale = struct.unpack(">f", bytes.fromhex(value))[0]
        amax[name] = float(scale) * 127.0
    details = {"trt_version_number": int(head.group(1)), "algorithm": head.group(2)}
    return CalibrationTable(amax, "cache", 0, details)


def read_cache(path: str | os.PathLike) -> CalibrationTable:
    p = Path(path)
    try:
        text = p.read_text()
    except FileNotFoundError:
        raise DataError(f"calibration cache not found: {p}") from None
    except UnicodeDecodeError:
        raise DataError(f"{p} is not a text calibration cache") from None
    return parse_cache(text, str(p))
