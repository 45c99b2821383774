"""Stage ``sparsify``: 2:4 structured pruning of the constant weights of Conv, ConvTranspose, Gemm and
MatMul, with an optional input-channel permutation search that keeps more weight magnitude.

Layers TensorRT cannot run sparse (grouped/depthwise convolutions, input channels not a multiple
of 4, weights computed at run time) and small layers (``min_channels``) stay dense and are listed
with the reason. Works on float models and on Q/DQ models (int8 weights: pruned to the zero point).
"""
from __future__ import annotations

import dataclasses

import onnx

from ..config import Config
from ..errors import ConfigError, ModelError
from ..model_io import require_float_weights
from ..sparsity.layers import layer_rules
from ..sparsity.prune import PruneOptions, sparsify_onnx
from ..contracts import After
from ..stage import StageResult, register_stage

__all__ = ["SparsifyConfig", "sparsify"]


@dataclasses.dataclass(frozen=True)
class SparsifyConfig(Config):
    """Options of the ``sparsify`` stage.

    ``include`` / ``exclude``: shell patterns (fnmatch) on node names, output or weight names.
    ``min_channels``: layers with fewer input or output channels stay dense.
    ``permute``: search an input-channel permutation per layer and carry it to the producer.
    """

    permute: bool = False
    include: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()
    op_types: tuple[str, ...] = ("Conv", "ConvTranspose", "Gemm", "MatMul")
    min_channels: int = 16
    permute_rounds: int = 20
    seed: int = 0

    def validate(self) -> None:
        unknown = sorted(set(self.op_types) - set(layer_rules()))
        if unknown:
            raise ConfigError(f"sparsify: op_types {', '.join(unknown)} not supported; choose from {', '.join(layer_rules())}")
        if not self.op_types:
            raise ConfigError("sparsify: op_types is empty; give at least one of " + ", ".join(layer_rules()))
        if self.min_channels < 4:
            raise ConfigError(f"sparsify: min_channels={self.min_channels} must be at least 4 (one group of 4)")
        if self.permute_rounds < 1:
            raise ConfigError(f"sparsify: permute_rounds={self.permute_rounds} must be at least 1")
        for field in ("include", "exclude", "op_types"):
            v = getattr(self, field)
            if isinstance(v, str) or not all(isinstance(p, str) for p in v):
                raise ConfigError(f"sparsify: {field} must be a list of strings, got {v!r}")

    def options(self) -> PruneOptions:
        return PruneOptions(
            permute=self.permute,
            include=tuple(self.include),
            exclude=tuple(self.exclude),
            op_types=tuple(self.op_types),
            min_channels=self.min_channels,
            seed=self.seed,
            permute_rounds=self.permute_rounds,
        )


@register_stage("sparsify", SparsifyConfig, ensures=("2:4",), after={
    "quantized": After("warn", "the zeros stay exact in int8, but the weight scales were calibrated on the dense weights; sparsify before quantize keeps more accuracy"),
})
def sparsify(model: onnx.ModelProto, config: SparsifyConfig) -> StageResult:
    if not isinstance(model, onnx.ModelProto):
        raise ModelError(f"sparsify works on ONNX models, got {type(model).__name__}; export the model to ONNX first")
    require_float_weights(model, "prune")
    pruned, report = sparsify_onnx(model, config.options())
    if report["layers_pruned"] == 0:
        report["warning"] = "no layer was pruned; see 'skipped' for the reasons"
    return StageResult(pruned, report)
