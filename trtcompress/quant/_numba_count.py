"""The numba counting kernel (imported only when numba is installed; see ``_kernels``)."""
from __future__ import annotations

import numba
import numpy as np


@numba.njit(nogil=True, cache=True, boundscheck=False)
def count_abs(a, scale, counts):  # pragma: no cover - compiled
    """Add ``floor(|a| * scale)`` of the non-zero values to ``counts``; return the number of zeros."""
    zeros = 0
    for i in range(a.size):
        x = abs(a[i])
        if x == 0:
            zeros += 1
        else:
            counts[np.intp(x * scale)] += 1
    return zeros
