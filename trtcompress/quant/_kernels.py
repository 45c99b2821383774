"""Counting |x| into histogram bins: the compiled kernel (``_count.c``, built with the package
when a C compiler is there), numpy otherwise.

Both compute ``bin = floor(|x| * scale)`` (exact: ``scale`` is a power of two) and return the
number of exact zeros, so the choice never changes a result, only the speed: numpy makes five
passes over the data and holds the GIL in ``bincount``; the compiled kernel makes one, about 5x
faster, and releases the GIL, so the calibration's workers count several tensors at once.
"""
from __future__ import annotations

import functools
from typing import Callable

import numpy as np

from ..errors import ConfigError

__all__ = ["get", "resolve", "have_compiled", "KERNELS"]

KERNELS = ("auto", "compiled", "numpy")
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


@functools.cache
def _compiled():
    """The built extension, or None (looked up once: a failed import would otherwise be retried
    for every tensor of every batch)."""
    try:
        from . import _count
    except ImportError:
        return None
    return _count


def count_compiled(a: np.ndarray, scale: np.generic, counts: np.ndarray, scratch: np.ndarray | None = None) -> int:
    return _compiled().count_abs(a, float(scale), counts)


def have_compiled() -> bool:
    return _compiled() is not None


def resolve(kernel: str = "auto") -> str:
    """The kernel ``kernel`` names (``auto``: compiled when built, else numpy)."""
    if kernel not in KERNELS:
        raise ConfigError(f"kernel must be one of {', '.join(KERNELS)}, got {kernel!r}")
    if kernel == "auto":
        return "compiled" if have_compiled() else "numpy"
    if kernel == "compiled" and not have_compiled():
        raise ConfigError(
            "the compiled counting kernel was not built in this installation (no C compiler at install time); "
            "reinstall trtcompress where a C compiler is available, or use the numpy kernel"
        )
    return kernel


def get(kernel: str = "auto") -> Count:
    """The counting function for ``kernel``."""
    return count_compiled if resolve(kernel) == "compiled" else count_numpy
