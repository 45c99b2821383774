"""Stage ``lowrank``: truncated-SVD factorisation of Conv/Gemm/MatMul weights in an ONNX model."""
from __future__ import annotations

import onnx

from ..errors import ModelError
from ..lowrank import LowRankConfig, factorize_onnx
from ..contracts import After
from ..model_io import require_float_weights
from ..stage import StageResult, register_stage

__all__ = ["LowRankConfig", "lowrank"]


@register_stage("lowrank", LowRankConfig, after={
    "2:4": After("refuse", "low-rank factors are dense, so the 2:4 layers would be lost; run lowrank first, then sparsify (it prunes the factors)"),
    "quantized": After("refuse", "it would rewrite weights whose int8 ranges quantize calibrated; run lowrank before quantize"),
})
def lowrank(model: onnx.ModelProto, config: LowRankConfig) -> StageResult:
    """Factorise the model's weights with ranks chosen by ``config.rule``; the report lists every
    factorised layer (rank, energy, params and FLOPs before and after) and every skipped one."""
    if not isinstance(model, onnx.ModelProto):
        raise ModelError(f"stage lowrank takes an ONNX model, got {type(model).__name__}; export the torch model first or use trtcompress.lowrank.torch_modules.factorize_module")
    require_float_weights(model, "factorise")
    result = factorize_onnx(model, config)
    return StageResult(result.model, result.report)
