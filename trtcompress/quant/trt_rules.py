"""A checker for TensorRT's documented Q/DQ constraints, runnable without TensorRT.

TensorRT's quantize/dequantize layers accept only: symmetric quantization (zero points all zero),
INT8 quantized type (a QuantizeLinear without an int8 zero point produces uint8, which TensorRT
rejects), float32 scales that are strictly positive and finite, a scalar scale for per-tensor or a
1-D scale whose length is the size of the quantization axis for per-channel, and opset 13 or newer
for per-axis Q/DQ. A QuantizeLinear must feed DequantizeLinear nodes with the same scale. Every
model the product writes for TensorRT goes through this in the tests.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import onnx

from ..errors import ModelError
from ._ir import View, as_ir, attr, const_value, is_const, shape_of

if TYPE_CHECKING:
    import onnx_ir as ir

__all__ = ["trt_qdq_violations", "check_trt_qdq"]


def trt_qdq_violations(model: "onnx.ModelProto | ir.Model") -> list[str]:
    """One line per violated constraint (empty when TensorRT's parser would accept every Q/DQ)."""
    import onnx_ir as ir

    m = as_ir(model)
    g = View(m)
    opset = m.opset_imports.get("", m.opset_imports.get("ai.onnx", 0))
    out: list[str] = []
    for n in g.nodes:
        if n.op_type not in ("QuantizeLinear", "DequantizeLinear"):
            continue
        where = f"{n.op_type} {n.name!r}"
        x = n.inputs[0]
        s_in = n.inputs[1] if len(n.inputs) > 1 else None
        if not is_const(s_in):
            out.append(f"{where}: scale must be a constant initializer")
            continue
        scale = const_value(s_in)
        if scale.dtype != np.float32:
            out.append(f"{where}: scale has type {scale.dtype}, TensorRT needs float32")
        if not np.all(np.isfinite(scale)) or not np.all(scale > 0):
            out.append(f"{where}: scales must be finite and > 0 (min {float(np.min(scale)) if scale.size else 'empty'})")
        zp_in = n.inputs[2] if len(n.inputs) > 2 else None
        if zp_in is None:
            if n.op_type == "QuantizeLinear":
                out.append(f"{where}: no zero point, so the output is uint8; TensorRT needs an int8 zero point of 0")
            elif x is not None and x.dtype not in (ir.DataType.INT8, None):
                out.append(f"{where}: input is not int8")
        else:
            zp = const_value(zp_in) if is_const(zp_in) else None
            if zp is None:
                out.append(f"{where}: zero point must be a constant")
            else:
                if zp.dtype != np.int8:
                    out.append(f"{where}: zero point has type {zp.dtype}, TensorRT needs int8")
                if np.any(zp != 0):
                    out.append(f"{where}: zero point must be all zeros (TensorRT quantization is symmetric)")
                if zp.shape != scale.shape:
                    out.append(f"{where}: zero point shape {list(zp.shape)} differs from scale shape {list(scale.shape)}")
        if scale.ndim > 1:
            out.append(f"{where}: scale must be a scalar or 1-D, has shape {list(scale.shape)}")
        elif scale.ndim == 1:
            if opset < 13:
                out.append(f"{where}: per-channel Q/DQ needs opset >= 13 (model has {opset})")
            shape = shape_of(x)
            if shape is None and is_const(x):
                shape = const_value(x).shape
            axis = attr(n, "axis", 1)
            if shape is not None:
                if not -len(shape) <= axis < len(shape):
                    out.append(f"{where}: axis {axis} out of range for rank {len(shape)}")
                elif shape[axis] is not None and shape[axis] != scale.shape[0]:
                    out.append(f"{where}: {scale.shape[0]} scales for axis {axis} of size {shape[axis]}")
        if n.op_type == "QuantizeLinear":
            for c in g.consumers(n.outputs[0]):
                if c.op_type != "DequantizeLinear":
                    out.append(f"{where}: feeds {c.op_type} {c.name!r}; TensorRT needs QuantizeLinear -> DequantizeLinear")
                elif is_const(c.inputs[1]) and not np.array_equal(const_value(c.inputs[1]), scale):
                    out.append(f"{where}: DequantizeLinear {c.name!r} uses a different scale")
            if n.outputs[0].is_graph_output():
                out.append(f"{where}: a quantized tensor is a graph output")
    return out


def check_trt_qdq(model: "onnx.ModelProto | ir.Model") -> None:
    """Raise :class:`ModelError` naming the first violations."""
    bad = trt_qdq_violations(model)
    if bad:
        more = f" (and {len(bad) - 3} more)" if len(bad) > 3 else ""
        raise ModelError("the Q/DQ model breaks TensorRT's constraints: " + "; ".join(bad[:3]) + more)
