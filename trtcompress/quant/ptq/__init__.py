"""Post-training techniques applied to the float model before Q/DQ placement is written.

Each technique is one module: an onnx-ir pass or a function over an ``ir.Model`` (and calibration
data) with a typed config. They run in this order, on the float model the quantize stage
calibrates, so the TensorRT Q/DQ form, the CPU form and the calibration cache all see the same
rewritten weights:

1. :mod:`.cle`: cross-layer equalization (data-free; the float function is unchanged).
2. :mod:`.smoothquant`: activation outliers of MatMul/Gemm inputs migrated into the weights
   (calibration data gives max|X|; the float function is unchanged).
3. :mod:`.bias_correction`: empirical bias correction for the weight grid of the written form
   (changes the float model so the quantized one has the float output means); last, so it
   measures the weights the others left.

:func:`apply_ptq` is the stage's one entry point; onnx-ir is imported only when it runs.
"""
from __future__ import annotations

import dataclasses
import time
from typing import TYPE_CHECKING, Any, Callable, Iterable, Mapping

import numpy as np
import onnx

if TYPE_CHECKING:
    import onnx_ir as ir

    from ..placement import QuantPlan
    from .bias_correction import WeightGrid

__all__ = ["PtqOptions", "apply_ptq", "weight_grids"]


@dataclasses.dataclass(frozen=True)
class PtqOptions:
    """Which techniques run and for which written form (``target``: tensorrt or cpu;
    ``cpu_weights``: the CPU form's weight type, see quant.lower_cpu)."""

    cle: bool = False
    bias_correction: bool = False
    smoothquant: float | None = None  # alpha
    target: str = "tensorrt"
    cpu_weights: str = "auto"
    bias_samples: int | None = 256
    threads: int = 0

    def any(self) -> bool:
        return self.cle or self.bias_correction or self.smoothquant is not None


_PASS_THROUGH = ("MaxPool", "Reshape", "Flatten", "Transpose", "Squeeze", "Unsqueeze", "Identity", "Pad")


def _nonnegative(value: ir.Value | None, depth: int = 0) -> bool:
    """ReLU/Clip(lo >= 0) output, or a pass-through op of one: the CPU form stores it with zero
    point 0 in [0, 127], so its readers keep int8 weights (quant.lower_cpu)."""
    from ...graph._util import const_array

    p = value.producer() if value is not None else None
    if p is None or depth > 16:
        return False
    if p.op_type == "Relu":
        return True
    if p.op_type == "Clip":
        lo = p.attributes["min"].as_float() if "min" in p.attributes else const_array(p.inputs[1]) if len(p.inputs) > 1 and p.inputs[1] is not None else None
        return lo is not None and float(lo) >= 0
    return p.op_type in _PASS_THROUGH and bool(p.inputs) and _nonnegative(p.inputs[0], depth + 1)


def _depthwise(node: ir.Node, w: np.ndarray) -> bool:
    group = node.attributes["group"].as_int() if "group" in node.attributes else 1
    return node.op_type == "Conv" and w.ndim >= 3 and w.shape[1] == 1 and group == w.shape[0] > 1


def weight_grids(model: ir.Model, plan: QuantPlan, options: PtqOptions) -> dict[str, WeightGrid]:
    """Node name -> the grid its weight (input 1) gets in the written form. The CPU form's int7
    layers (no VNNI: a dense layer reading a signed tensor) use twice the step; layers its layer
    rule keeps float are not known here and get the int8 grid."""
    from ...graph._util import const_array
    from ..lower_cpu import resolve_weight_type
    from .bias_correction import WeightGrid

    cpu_type = resolve_weight_type(options.cpu_weights) if options.target == "cpu" else "int8"
    nodes = {n.name: n for n in model.graph}
    grids = {}
    for spec in plan.weights:
        node = nodes.get(spec.node)
        if spec.index != 1 or node is None:
            continue
        step = 1.0
        if cpu_type == "int7" and not _nonnegative(node.inputs[0]):
            w = const_array(node.inputs[1])
            step = 1.0 if w is not None and _depthwise(node, w) else 2.0
        grids[spec.node] = WeightGrid(spec.axis, step)
    return grids


def apply_ptq(model: onnx.ModelProto, plan: QuantPlan, options: PtqOptions,
              feeds: Callable[[], Iterable[Mapping[str, np.ndarray]]] | None = None) -> tuple[onnx.ModelProto, dict[str, Any]]:
    """The float model with the chosen techniques applied (a new model) and what each changed per
    layer. Only the plan's quantized layers change. ``feeds`` opens the calibration data (bias
    correction reads it)."""
    import onnx_ir as ir

    from .bias_correction import BiasCorrectionConfig, bias_correct
    from .cle import CrossLayerEqualizationPass

    if any(t.data_location == onnx.TensorProto.EXTERNAL for t in model.graph.initializer):
        from ...errors import ConfigError

        raise ConfigError("--cle, --bias-correction and --smoothquant read and rewrite weights in memory and do not yet take a model over 2 GB; quantize it without them")
    work = ir.serde.deserialize_model(model)
    report: dict[str, Any] = {}
    if options.cle:
        t0 = time.perf_counter()
        cle = CrossLayerEqualizationPass(include=set(plan.quantized_nodes))
        cle(work)
        report["cle"] = {"pairs": cle.pairs, "skipped": cle.skipped, "seconds": round(time.perf_counter() - t0, 3)}
    if (options.bias_correction or options.smoothquant is not None) and feeds is None:
        from ...errors import ConfigError

        raise ConfigError("bias correction and smoothquant measure on calibration data: give --calib DATA (a saved --table alone is not enough)")
    if options.smoothquant is not None:
        from .smoothquant import SmoothQuantConfig, smooth_quant

        t0 = time.perf_counter()
        found = smooth_quant(work, set(plan.quantized_nodes), feeds(), SmoothQuantConfig(options.smoothquant, options.bias_samples, options.threads))
        report["smoothquant"] = {**found, "seconds": round(time.perf_counter() - t0, 3)}
    if options.bias_correction:
        t0 = time.perf_counter()
        found = bias_correct(work, weight_grids(work, plan, options), feeds(), BiasCorrectionConfig(options.bias_samples, options.threads))
        report["bias_correction"] = {**found, "seconds": round(time.perf_counter() - t0, 3)}
    return ir.serde.serialize_model(work), report
