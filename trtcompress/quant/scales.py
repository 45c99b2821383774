"""Symmetric INT8 scales from amax values: one rule shared by the TensorRT form and the CPU lowering."""
from __future__ import annotations

import numpy as np

from ..errors import DataError
from .table import CalibrationTable

__all__ = ["activation_scale", "weight_scales", "weight_amax", "scales_from_amax", "quantize_weight", "TINY_AMAX"]

# A tensor that is all zeros on the calibration data still needs a positive scale (TensorRT
# refuses scale <= 0); any positive value represents zero exactly.
TINY_AMAX = 1e-6


def activation_scale(table: CalibrationTable, tensor: str) -> np.float32:
    """``amax / 127`` as float32, with a clear error when calibration did not cover ``tensor``."""
    if tensor not in table.amax:
        raise DataError(
            f"the calibration table has no range for tensor {tensor!r}; it was made for another model or "
            f"another placement: recalibrate with this model and the same include/exclude options"
        )
    amax = float(table.amax[tensor])
    if not np.isfinite(amax) or amax < 0:
        raise DataError(f"calibration range of {tensor!r} is {amax}; the calibration data produced NaN/Inf there: check the data")
    return np.float32(max(amax, TINY_AMAX) / 127.0)


# Integer back ends (ONNX Runtime, TensorRT) add the bias as int32 in units of
# input_scale * weight_scale; keep |bias| / that unit below 2**30 so it never overflows.
BIAS_LIMIT = float(2**30)
QUANTIZE_BLOCK = 1 << 22  # weight elements quantized at a time


def weight_scales(
    w: np.ndarray,
    axis: int | None,
    bias: np.ndarray | None = None,
    input_scale: float | None = None,
) -> np.ndarray:
    """Per-channel (``axis``) or per-tensor max-abs scales of a weight, float32, all > 0.

    A channel whose weights are (nearly) all zero, common after BatchNorm folding, would get a
    scale so small that its bias overflows int32 once divided by ``input_scale * scale``: such
    channels get the smallest scale that keeps the bias in range (their weights round to ~0,
    which they are anyway).
    """
    return scales_from_amax(weight_amax(w, axis), bias, input_scale)


def weight_amax(w: np.ndarray, axis: int | None) -> np.ndarray:
    """max |w| per channel of ``axis`` (a scalar for per-tensor)."""
    w = np.asarray(w, dtype=np.float32)
    if axis is None:
        return np.float32(max(w.max(), -w.min()) if w.size else 0.0)
    axis = axis % w.ndim
    other = tuple(i for i in range(w.ndim) if i != axis)
    # max(max, -min): max |w| without a temporary the size of the weight
    return np.maximum(w.max(axis=other), -w.min(axis=other)) if other else np.abs(w)


def scales_from_amax(amax: np.ndarray, bias: np.ndarray | None = None, input_scale: float | None = None) -> np.ndarray:
    """:func:`weight_scales` from the weight's :func:`weight_amax`."""
    if np.ndim(amax) == 0:
        scale = np.float32(max(float(amax), TINY_AMAX) / 127.0)
    else:
        scale = (np.maximum(amax, TINY_AMAX) / 127.0).astype(np.float32)
    if bias is not None and input_scale:
        floor = np.abs(np.asarray(bias, np.float64)) / (float(input_scale) * BIAS_LIMIT)
        if np.ndim(scale) == 0:
            floor = floor.max() if floor.size else 0.0
        elif floor.shape != scale.shape:
            return scale
        scale = np.maximum(scale, floor).astype(np.float32)
    return scale


def quantize_weight(w: np.ndarray, scale: np.ndarray, axis: int | None) -> np.ndarray:
    """Round half to even and clamp to [-127, 127] (symmetric, as TensorRT quantizes weights)."""
    w = np.asarray(w, dtype=np.float32)
    s = np.asarray(scale, dtype=np.float32)
    if axis is not None and s.ndim == 1:
        shape = [1] * w.ndim
        shape[axis % w.ndim] = -1
        s = s.reshape(shape)
    out = np.empty(w.shape, np.int8)
    if w.ndim == 0:
        out[...] = np.clip(np.rint(w / s), -127, 127)
        return out
    # blocks of rows: float temporaries of a few MB instead of the weight's size (16x faster on
    # a 2 GB weight, whose temporaries cost more in page faults than in arithmetic)
    rows = max(1, QUANTIZE_BLOCK // max(1, w[0].size))
    per_row = s.ndim == w.ndim and s.shape[0] > 1
    for i in range(0, w.shape[0], rows):
        q = w[i : i + rows] / (s[i : i + rows] if per_row else s)
        np.rint(q, out=q)
        np.clip(q, -127, 127, out=q)
        out[i : i + rows] = q
    return out
