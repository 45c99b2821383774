"""Stage ``share``: k-means weight sharing of Conv/Gemm/MatMul weights (Deep Compression's second
step), written as uint8 indices + float codebooks decoded by constant Gather operators.

The report gives each layer's weight error and three sizes, because weight sharing pays off in
what is shipped, not in what runs: the FP32 ONNX given, the shared ONNX (indices at one byte per
weight) and the packed artifact (``trtcompress pack``: entropy-coded indices), which is what a
fleet downloads. ONNX Runtime folds the decode at load time, so the session holds ordinary weights.
"""
from __future__ import annotations

import onnx

from ..contracts import After
from ..errors import ModelError
from ..model_io import require_float_weights
from ..share.config import ShareConfig
from ..stage import StageResult, register_stage

__all__ = ["ShareConfig", "share"]


@register_stage("share", ShareConfig, ensures=("shared",), after={
    "quantized": After("refuse", "sharing rewrites weights whose int8 ranges were calibrated; run share before quantize"),
})
def share(model: onnx.ModelProto, config: ShareConfig) -> StageResult:
    """Share the chosen layers' weights; the report lists each shared layer (clusters, bits,
    relative and max error) and each skipped one, and the sizes before, after and packed."""
    from ..share.onnx_share import share_onnx
    from ..share.pack import pack_bytes

    if not isinstance(model, onnx.ModelProto):
        raise ModelError(f"stage share takes an ONNX model, got {type(model).__name__}; export the model to ONNX first")
    require_float_weights(model, "share")
    out, report = share_onnx(model, config)
    before = model.ByteSize()
    after_bytes = out.SerializeToString()
    _, packed = pack_bytes(after_bytes)
    report["sizes"] = {
        "onnx_bytes_before": before,
        "onnx_bytes_after": len(after_bytes),
        "packed_bytes": packed["artifact_bytes"],
        "ratio_onnx": before / len(after_bytes),
        "ratio_packed": before / packed["artifact_bytes"],
    }
    if not report["layers_shared"]:
        report["notes"] = ["shared no layer: the model is unchanged; see 'skipped' for the reasons (lower --min-size, check --include)"]
    return StageResult(out, report)
