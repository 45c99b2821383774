"""Stage ``normalize``: the graph rewrites that make other exporters' graphs look like ours, run
before any other stage (``compress`` and the single-stage verbs run it first unless told not to).

Constant and static-shape folding, no-op removal (Identity, Dropout, same-type Cast, same-shape
Reshape), BatchNormalization folded into Conv/ConvTranspose/Gemm, zero Pads folded into the
Conv/pooling reading them, duplicate initializers shared, dead nodes and initializers removed.
Each has a switch. With ``verify``, the model runs once before and once after on random inputs
(or ``verify_data``) and the largest output difference is reported.

:func:`cleanup` is the pass that runs after the last stage: no dead node or initializer ships.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Callable

import numpy as np
import onnx

from ..config import Config
from ..errors import ConfigError, ModelError
from ..stage import StageResult, register_stage

__all__ = ["NormalizeConfig", "REWRITE_SWITCHES", "normalize", "cleanup", "with_normalize"]


REWRITE_SWITCHES = ("fold_constants", "remove_noops", "fold_batchnorm", "fold_pad", "dedup_initializers", "remove_dead")


@dataclasses.dataclass(frozen=True)
class NormalizeConfig(Config):
    """Options of the ``normalize`` stage: one switch per rewrite, and an optional check."""

    fold_constants: bool = True
    remove_noops: bool = True
    fold_batchnorm: bool = True
    fold_pad: bool = True
    dedup_initializers: bool = True
    remove_dead: bool = True
    min_opset: int = 13  # convert older models first (per-channel Q/DQ needs 13); 0: leave the opset
    verify: bool = False
    verify_data: str = "random:1"
    verify_tolerance: float = 1e-3  # relative to the largest output magnitude

    def validate(self) -> None:
        if self.min_opset and not 13 <= self.min_opset <= 21:
            raise ConfigError(f"normalize: min_opset={self.min_opset} must be 0 (leave) or 13..21")
        if not self.verify_tolerance > 0:
            raise ConfigError(f"normalize: verify_tolerance={self.verify_tolerance} must be > 0")

    def switches(self) -> dict[str, bool]:
        """Rewrite name -> enabled (the names of ``trtcompress.graph.normalize.REWRITES``)."""
        return {name: getattr(self, name) for name in REWRITE_SWITCHES}


@register_stage("normalize", NormalizeConfig)
def normalize(model: onnx.ModelProto, config: NormalizeConfig) -> StageResult:
    if not isinstance(model, onnx.ModelProto):
        raise ModelError(f"normalize works on ONNX models, got {type(model).__name__}; export the model to ONNX first")
    from ..graph.normalize import normalize as run

    out, report = run(model, config.switches(), config.min_opset)
    if config.verify:
        report["verify"] = _verify(model, out, config)
    return StageResult(out, report)


def cleanup(model: onnx.ModelProto) -> tuple[onnx.ModelProto, dict[str, int]]:
    """Remove dead nodes and initializers left by the stages (run after the last one)."""
    from ..graph.normalize import cleanup as run

    return run(model)


def with_normalize(stage: Callable[[Any, Any], StageResult], model: onnx.ModelProto, config: Config, enabled: bool = True) -> StageResult:
    """Run one stage as the single-stage verbs do: the default normalisation first, the cleanup
    after; their reports land in the stage's report (``normalize``, ``cleanup``)."""
    if not enabled:
        return stage(model, config)
    norm = normalize(model, NormalizeConfig())
    result = stage(norm.model, config)
    result.model, result.report["cleanup"] = cleanup(result.model)
    result.report["normalize"] = norm.report
    return result


def _verify(before: onnx.ModelProto, after: onnx.ModelProto, config: NormalizeConfig) -> dict[str, Any]:
    """One ONNX Runtime run of each model on the same inputs; raises ModelError past the tolerance."""
    from ..data.base import model_inputs
    from ..data.options import open_data
    from ..sessions import open_session

    feed = next(iter(open_data(config.verify_data, model_inputs(before))))
    a = open_session(before).run(None, feed)
    b = open_session(after).run(None, feed)
    worst = 0.0
    for x, y in zip(a, b):
        scale = float(np.max(np.abs(x))) if np.size(x) else 0.0
        if np.issubdtype(np.asarray(x).dtype, np.floating):
            worst = max(worst, float(np.max(np.abs(x - y))) / max(scale, 1e-12) if np.size(x) else 0.0)
        elif not np.array_equal(x, y):
            worst = float("inf")
    if worst > config.verify_tolerance:
        raise ModelError(f"normalize changed the model's outputs (relative difference {worst:.3g} > {config.verify_tolerance}); "
                         "rerun with the rewrite that caused it switched off and report the model")
    return {"data": config.verify_data, "max_relative_difference": worst}
