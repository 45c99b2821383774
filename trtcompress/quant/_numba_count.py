"""The numba counting kernel (imported only when numba is installed; see ``_kernels``)."""
from __future__ import annotations

import numba
import numpy as np


@numba.njit(nogil=True, cache=True, boundscheck=False)
def count_abs(a, scale, counts):  # pragma: no cover - compiled
    """Add ``floor(|a| * scale)`` to ``counts`` (zeros land in bin 0); return the number of exact zeros.

    Branch-free: ReLU outputs mix zeros and non-zeros at random, which a branch mispredicts.
    """
    zeros = 0
    for i in range(a.size):
        x = abs(a[i])
        zeros += x == 0
        counts[np.intp(x * scale)] += 1
    return zeros
