"""Counting |x| into histogram bins: a fused numba kernel when numba is installed, numpy otherwise.

Both compute ``bin = floor(|x| * scale)`` (exact: ``scale`` is a power of two) and return the
number of exact zeros, so the choice never changes a result, only the speed: the numpy path
makes five passes over the data and holds the GIL in ``bincount``; the numba kernel makes one
and releases the GIL, so several tensors are counted at once while ONNX Runtime runs.
"""
from __future__ import annotations

import threading
from typing import Callable

import numpy as np

from ..errors import ConfigError

__all__ = ["get", "have_numba", "KERNELS"]

KERNELS = ("auto", "numba", "numpy")
Count = Callable[[np.ndarray, np.generic, np.ndarray, "np.ndarray | None"], int]


def count_numpy(a: np.ndarray, scale: np.generic, counts: np.ndarray, scratch: np.ndarray | None = None) -> int:
    """Add ``floor(|a| * scale)`` to ``counts``; return how many values are exactly zero."""
    if scratch is not None and scratch.dtype == a.dtype and scratch.size >= a.size:
        buf = scratch[: a.size]
    else:
        buf = np.empty_like(a)
    np.abs(a, out=buf)
    zeros = int(a.size - np.count_nonzero(buf))
    np.multiply(buf, scale, out=buf)
    counts += np.bincount(buf.astype(np.intp), minlength=counts.size)
    return zeros


_numba_count: Count | None = None
_lock = threading.Lock()


def _build_numba() -> Count:
    from ._numba_count import count_abs

    def count(a: np.ndarray, scale: np.generic, counts: np.ndarray, scratch: np.ndarray | None = None) -> int:
        return int(count_abs(a, scale, counts))

    return count


def have_numba() -> bool:
    try:
        import numba  # noqa: F401
    except Exception:
        return False
    return True


def get(kernel: str = "auto") -> Count:
    """The counting function for ``kernel`` (auto: numba when installed)."""
    global _numba_count
    if kernel not in KERNELS:
        raise ConfigError(f"kernel must be one of {', '.join(KERNELS)}, got {kernel!r}")
    if kernel == "numpy" or (kernel == "auto" and not have_numba()):
        return count_numpy
    if kernel == "numba" and not have_numba():
        from .._optional import require

        require("numba", "the fast calibration kernel")
    with _lock:
        if _numba_count is None:
            _numba_count = _build_numba()
    return _numba_count
