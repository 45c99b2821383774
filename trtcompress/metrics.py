"""The seed's metrics, computed in one place so every report states them the same way.

- compression ratio = original size / compressed size (bytes on disk, and parameters)
- speedup ratio = original latency / compressed latency (from one interleaved run)
- pruning rate = pruned / total parameters, in % (pruned as counted by the pruning stages)
- quantization error = |original - quantized| at the outputs (max and mean)
"""
from __future__ import annotations

import os
from typing import Any

import numpy as np
import onnx
from onnx import numpy_helper

from .model_io import file_size

__all__ = ["weight_stats", "runtime_weight_bytes", "shared_weights", "compression_ratio", "speedup_ratio", "pruning_rate", "quantization_error", "summary"]

# inputs of these ops at these positions are quantization parameters, not model parameters
_QPARAM_INPUTS = {"QuantizeLinear": (1, 2), "DequantizeLinear": (1, 2)}
_NOT_WEIGHTS = (onnx.TensorProto.INT64, onnx.TensorProto.BOOL, onnx.TensorProto.STRING)


def weight_stats(model: onnx.ModelProto | str | os.PathLike) -> dict[str, int]:
    """Parameter count and zero count over the model's weights (initialisers that are not Q/DQ scales or zero points)."""
    if not isinstance(model, onnx.ModelProto):
        from .model_io import load_model

        model = load_model(model, check=False)
    qparams = {n.input[i] for n in model.graph.node for i in _QPARAM_INPUTS.get(n.op_type, ()) if i < len(n.input)}
    total = zeros = 0
    for t in model.graph.initializer:
        if t.name in qparams or t.data_type in _NOT_WEIGHTS:
            continue  # shapes, axes, masks: not weights
        a = numpy_helper.to_array(t)
        total += a.size
        zeros += int(a.size - np.count_nonzero(a))
    return {"parameters": total, "zeros": zeros, "nonzero": total - zeros}


def shared_weights(model: onnx.ModelProto) -> dict[str, str]:
    """Codebook -> index initializer of each weight decoded as ``Gather(codebook, Cast(indices))``
    (the share stage's form, per layer or per channel)."""
    producers = {o: n for n in model.graph.node for o in n.output}
    inits = {t.name: t.data_type for t in model.graph.initializer}
    out = {}
    for n in model.graph.node:
        cast = producers.get(n.input[1]) if n.op_type in ("Gather", "GatherElements") and n.input[0] in inits else None
        if cast is not None and cast.op_type == "Cast" and inits.get(cast.input[0]) == onnx.TensorProto.UINT8:
            out[n.input[0]] = cast.input[0]
    return out


def runtime_weight_bytes(model: onnx.ModelProto) -> int:
    """Bytes of the weights as a runtime holds them once the model is loaded or built: shared weights
    decoded (one codebook value per index), weights read by a QuantizeLinear as int8 (what a
    TensorRT engine stores), Q/DQ scales and shape constants left out."""
    qparams = {n.input[i] for n in model.graph.node for i in _QPARAM_INPUTS.get(n.op_type, ()) if i < len(n.input)}
    quantized = {n.input[0] for n in model.graph.node if n.op_type == "QuantizeLinear"}
    dims = {t.name: t.dims for t in model.graph.initializer}
    decoded = shared_weights(model)
    total = 0
    for t in model.graph.initializer:
        if t.name in qparams or t.name in decoded.values() or t.data_type in _NOT_WEIGHTS:
            continue
        count = int(np.prod(dims[decoded.get(t.name, t.name)]))
        total += count * (1 if t.name in quantized else onnx.helper.tensor_dtype_to_np_dtype(t.data_type).itemsize)
    return total


def compression_ratio(original: str | os.PathLike, compressed: str | os.PathLike) -> dict[str, Any]:
    """Size on disk, in memory and, for a model with shared weights, packed for shipping
    (``trtcompress pack``); parameter ratios (all weights, and non-zero weights as sparse storage
    counts them)."""
    from .model_io import load_model

    ma, mb = (load_model(p, check=False) for p in (original, compressed))
    a, b = weight_stats(ma), weight_stats(mb)
    sa, sb = file_size(original), file_size(compressed)
    ra, rb = runtime_weight_bytes(ma), runtime_weight_bytes(mb)
    shipped = {}
    if shared_weights(mb):
        from .share.pack import pack_bytes

        _, packed = pack_bytes(mb.SerializeToString())
        shipped = {"bytes_packed": packed["artifact_bytes"], "ratio_packed": _ratio(sa, packed["artifact_bytes"])}
    return {
        "bytes_original": sa,
        "bytes_compressed": sb,
        "ratio_disk": _ratio(sa, sb),
        **shipped,
        "weight_bytes_in_memory_original": ra,
        "weight_bytes_in_memory_compressed": rb,
        "ratio_in_memory": _ratio(ra, rb),
        "parameters_original": a["parameters"],
        "parameters_compressed": b["parameters"],
        "ratio_parameters": _ratio(a["parameters"], b["parameters"]),
        "ratio_nonzero_parameters": _ratio(a["nonzero"], b["nonzero"]),
    }


def speedup_ratio(original_latency_ms: float, compressed_latency_ms: float) -> float | None:
    return _ratio(original_latency_ms, compressed_latency_ms)


def pruning_rate(total: int, pruned: int) -> dict[str, Any]:
    """``pruned`` weights (as the pruning stages count them) over the original's ``total`` parameters.

    Counted by the stages, not by diffing zeros: INT8 rounding also turns tiny weights into zeros,
    and that is not pruning.
    """
    return {"pruned": pruned, "total": total, "percent": 100.0 * pruned / total if total else 0.0}


def quantization_error(compare_report: dict[str, Any]) -> dict[str, float | None]:
    """|original - quantized| at the outputs, max and mean over all outputs of a compare report."""
    outs = compare_report.get("outputs", {})
    if not outs:
        return {"max_abs": None, "mean_abs": None}
    return {
        "max_abs": max(o["max_abs"] for o in outs.values()),
        "mean_abs": float(np.mean([o["mean_abs"] for o in outs.values()])),
    }


def summary(
    original: str | os.PathLike,
    compressed: str | os.PathLike,
    compare_report: dict[str, Any] | None = None,
    latency_ms: tuple[float, float] | None = None,
    pruned: int = 0,
) -> dict[str, Any]:
    """All four metrics for one run (None where a measurement was not made)."""
    compression = compression_ratio(original, compressed)
    return {
        "compression": compression,
        "speedup": speedup_ratio(*latency_ms) if latency_ms else None,
        "pruning_rate": pruning_rate(compression["parameters_original"], pruned),
        "quantization_error": quantization_error(compare_report) if compare_report else None,
    }


def _ratio(a: float, b: float) -> float | None:
    return float(a) / float(b) if b else None
