"""Stage ``lowrank``: truncated-SVD factorisation of Conv/Gemm/MatMul weights in an ONNX model."""
from __future__ import annotations

import onnx

from ..errors import ModelError
from ..lowrank import LowRankConfig, factorize_onnx
from ..contracts import After
from ..model_io import require_float_weights
from ..stage import StageResult, register_stage

__all__ = ["LowRankConfig", "lowrank", "NEGLIGIBLE_FLOP_GAIN"]

# below this fraction of the model's FLOPs removed, a factorisation is called negligible: it still
# costs accuracy (measured on a BERT encoder: 0.15 of embedding cosine for 2% fewer FLOPs)
NEGLIGIBLE_FLOP_GAIN = 0.05


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
    notes = _no_gain_notes(result.report, config)
    if notes:
        result.report["notes"] = notes
    return StageResult(result.model, result.report)


def _no_gain_notes(report: dict, config: LowRankConfig) -> list[str]:
    """One line when the stage changed nothing, or removed a negligible share of the FLOPs."""
    if not report["factorised"]:
        return [f"factorised no layer (rule {config.rule}): the model is unchanged; with the energy rule lower --energy, or give --rule flops --flop-fraction F"]
    removed = 1 - report["flops_after"] / report["flops_before"] if report["flops_before"] else 0.0
    if removed < NEGLIGIBLE_FLOP_GAIN:
        return [f"removed only {removed:.1%} of the FLOPs ({report['factorised']} layers) yet changes the outputs: little to gain for the accuracy it costs (see the comparison)"]
    return []
