"""Post-training techniques applied to the float model before Q/DQ placement is written.

Each technique is one module: an onnx-ir pass or a function over an ``ir.Model`` (and calibration
data) with a typed config. They run in this order, on the float model the quantize stage
calibrates, so the TensorRT Q/DQ form, the CPU form and the calibration cache all see the same
rewritten weights:

1. :mod:`.cle`: cross-layer equalization (data-free; the float function is unchanged).
2. :mod:`.smoothquant`: activation outliers of MatMul/Gemm inputs migrated into the weights
   (calibration data gives max|X|; the float function is unchanged).
3. :mod:`.adaround`: learned weight rounding on the written form's grid (learned here, written
   into the model last, on the grid, so the writers' rounding reproduces the learned integers).
4. :mod:`.bias_correction`: empirical bias correction for the weight grid of the written form
   (changes the float model so the quantized one has the float output means); last, so it
   measures the weights the others left (after AdaRound: the float weights against the learned).

Only the layers the written form runs in integer are touched (:func:`written_layers`).

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

__all__ = ["PtqOptions", "apply_ptq", "layer_summary", "restore", "weight_grids", "written_layers"]


@dataclasses.dataclass(frozen=True)
class PtqOptions:
    """Which techniques run and for which written form (``target``: tensorrt or cpu;
    ``cpu_weights``, ``cpu_layer_rule``, ``target_trt``: as the quantize stage's, which decide the
    layers that form runs in integer and their weight grid)."""

    cle: bool = False
    bias_correction: bool = False
    smoothquant: float | None = None  # alpha
    target: str = "tensorrt"
    cpu_weights: str = "auto"
    cpu_layer_rule: str = "auto"
    target_trt: str | None = None
    bias_samples: int | None = 256
    threads: int = 0
    adaround: bool = False
    adaround_iterations: int = 200

    def any(self) -> bool:
        return self.cle or self.bias_correction or self.adaround or self.smoothquant is not None


def written_layers(model: ir.Model, plan: QuantPlan, options: PtqOptions) -> dict[str, str]:
    """Node name -> the weight type each planned layer gets in the written form (int8; the CPU form:
    int8, int7 or uint8), for the layers that form really runs in integer. Decided before the
    techniques change the model, by the writers' own rules: TensorRT's kernel exclusions, and the
    CPU form's layer rule and weight types, read off a lowering with a stand-in table (they depend
    on which tensors have a range and on the graph, not on the range values). A layer left out
    stays float there and must keep its float weights and bias."""
    import onnx_ir as ir

    from ..table import CalibrationTable

    if options.target == "tensorrt":
        from ...trt.version import parse_version
        from ..trt_kernels import kernel_exclusions

        dropped = kernel_exclusions(model, plan, parse_version(options.target_trt) if options.target_trt else None)
        return {n: "int8" for n in plan.quantized_nodes if n not in dropped}
    from ..lower_cpu import lower_cpu

    # distinct amax per tensor, as calibration gives: the rules compare ranges only for equality
    stand_in = CalibrationTable({t: 1.0 + i / 1024 for i, t in enumerate(plan.activation_tensors)}, "stand-in")
    return lower_cpu(ir.serde.serialize_model(model), plan, stand_in, weights=options.cpu_weights, layer_rule=options.cpu_layer_rule).layer_weights


def weight_grids(model: ir.Model, plan: QuantPlan, options: PtqOptions, layers: Mapping[str, str] | None = None) -> dict[str, WeightGrid]:
    """Node name -> the grid its weight (input 1) gets in the written form, for the layers that
    form runs in integer (``layers``: :func:`written_layers`, computed when not given). The CPU
    form's int7 layers (no VNNI: a dense layer reading a signed tensor) use twice the step."""
    from .bias_correction import WeightGrid

    if layers is None:
        layers = written_layers(model, plan, options)
    return {spec.node: WeightGrid(spec.axis, 2.0 if layers[spec.node] == "int7" else 1.0)
            for spec in plan.weights if spec.index == 1 and spec.node in layers}


def apply_ptq(model: onnx.ModelProto, plan: QuantPlan, options: PtqOptions,
              feeds: Callable[[], Iterable[Mapping[str, np.ndarray]]] | None = None,
              undo: dict[str, dict[int, np.ndarray]] | None = None) -> tuple[onnx.ModelProto, dict[str, Any]]:
    """The float model with the chosen techniques applied (a new model) and what each changed per
    layer. Only the plan's quantized layers change. ``feeds`` opens the calibration data (bias
    correction reads it). ``undo``, when given, receives each layer's float weight and bias (and
    a MatMul's bias Add's) as they were before AdaRound and bias correction: node name -> input
    index -> array, so a layer kept float later (the accuracy target) can get them back."""
    import onnx_ir as ir

    from .bias_correction import BiasCorrectionConfig, bias_correct
    from .cle import CrossLayerEqualizationPass

    if any(t.data_location == onnx.TensorProto.EXTERNAL for t in model.graph.initializer):
        from ...errors import ConfigError

        raise ConfigError("--cle, --bias-correction, --adaround and --smoothquant read and rewrite weights in memory and do not yet take a model over 2 GB; quantize it without them")
    if options.adaround:
        from ..._optional import require

        require("torch", "--adaround (learned weight rounding)")  # before any pass runs
    work = ir.serde.deserialize_model(model)
    # which layers the written form runs in integer, decided on the model as given: only those are
    # corrected (a layer the form keeps float must keep its float bias)
    layers = written_layers(work, plan, options)
    report: dict[str, Any] = {}
    if options.cle:
        t0 = time.perf_counter()
        cle = CrossLayerEqualizationPass(include=set(plan.quantized_nodes))
        cle(work)
        report["cle"] = {"pairs": cle.pairs, "skipped": cle.skipped, "seconds": round(time.perf_counter() - t0, 3)}
    if (options.bias_correction or options.adaround or options.smoothquant is not None) and feeds is None:
        from ...errors import ConfigError

        raise ConfigError("bias correction, adaround and smoothquant measure on calibration data: give --calib DATA (a saved --table alone is not enough)")
    if options.smoothquant is not None:
        from .smoothquant import SmoothQuantConfig, smooth_quant

        t0 = time.perf_counter()
        found = smooth_quant(work, set(plan.quantized_nodes), feeds(), SmoothQuantConfig(options.smoothquant, options.bias_samples, options.threads))
        report["smoothquant"] = {**found, "seconds": round(time.perf_counter() - t0, 3)}
    grids: dict[str, Any] = weight_grids(work, plan, options, layers)
    if undo is not None and (options.adaround or options.bias_correction):
        _snapshot(work, grids, undo)
    learned: dict[str, np.ndarray] = {}
    if options.adaround:
        from .adaround import AdaRoundConfig, LearnedGrid, adaround

        t0 = time.perf_counter()
        learned, found = adaround(work, grids, feeds(), AdaRoundConfig(iterations=options.adaround_iterations, threads=options.threads))
        report["adaround"] = {**found, "seconds": round(time.perf_counter() - t0, 3)}
        grids.update((name, LearnedGrid(w)) for name, w in learned.items())
    if options.bias_correction:
        # after AdaRound: the float model's weights against the learned ones, so both combine
        t0 = time.perf_counter()
        found = bias_correct(work, grids, feeds(), BiasCorrectionConfig(options.bias_samples, options.threads))
        report["bias_correction"] = {**found, "seconds": round(time.perf_counter() - t0, 3)}
    if learned:
        from .adaround import write

        write(work, learned)
    if report:
        report["layers"] = layer_summary(report)
    return ir.serde.serialize_model(work), report


def _snapshot(model: ir.Model, layers: Iterable[str], undo: dict[str, dict[int, np.ndarray]]) -> None:
    """The constant inputs of each layer and of an Add that alone reads it (a MatMul's bias)."""
    from ...graph._util import const_array, single_use

    wanted = set(layers)
    for node in model.graph:
        if node.name not in wanted:
            continue
        owners = [node]
        y = node.outputs[0]
        add = next(iter(y.consumers()), None) if single_use(y) else None
        if add is not None and add.op_type == "Add":
            owners.append(add)
        for owner in owners:
            for i, v in enumerate(owner.inputs):
                a = const_array(v) if i > 0 or owner is add else None
                if a is not None:
                    undo.setdefault(owner.name, {})[i] = np.array(a)


def restore(model: onnx.ModelProto, undo: Mapping[str, Mapping[int, np.ndarray]], layers: Iterable[str]) -> list[str]:
    """Give ``layers`` (and a MatMul's bias Add) back their float weight and bias from ``undo``
    (:func:`apply_ptq`), in place; returns the layers changed. For layers the accuracy target
    keeps float: rounding-aware weights and biases are wrong for a float layer."""
    from onnx import numpy_helper

    by_name = {n.name: n for n in model.graph.node}
    inits = {t.name for t in model.graph.initializer}
    changed = []
    for layer in layers:
        node = by_name.get(layer)
        if node is None or layer not in undo:
            continue
        owners = [node] + [n for n in model.graph.node if n.op_type == "Add" and n.name in undo and node.output[0] in n.input and n is not node]
        for owner in owners:
            for i, a in undo.get(owner.name, {}).items():
                name = f"{owner.name}_input{i}_float"
                while name in inits:
                    name += "_"
                inits.add(name)
                model.graph.initializer.append(numpy_helper.from_array(a, name))
                owner.input[i] = name
        changed.append(layer)
    return changed


def layer_summary(report: Mapping[str, Any]) -> list[dict[str, Any]]:
    """One compact row per layer a technique changed: which, and what it gained there (AdaRound:
    the layer's relative output error on its calibration rows with nearest and learned rounding;
    bias correction: the mean |output shift| it removed; CLE and SmoothQuant keep the float
    function, so their gain shows in the quantized layer's error, not here)."""
    rows: dict[str, dict[str, Any]] = {}

    def row(layer: str) -> dict[str, Any]:
        return rows.setdefault(layer, {"layer": layer, "techniques": []})

    for pair in report.get("cle", {}).get("pairs", []):
        for key in ("first", "second"):
            if isinstance(pair.get(key), str):
                row(pair[key])["techniques"].append("cle")
    for a in report.get("smoothquant", {}).get("activations", []):
        for layer in a.get("layers", []):
            row(layer)["techniques"].append("smoothquant")
    for r in report.get("adaround", {}).get("layers", []):
        if "kept" not in r:
            row(r["layer"])["techniques"].append("adaround")
            row(r["layer"])["output_error"] = [r["error_nearest"], r["error_learned"]]
    for r in report.get("bias_correction", {}).get("layers", []):
        row(r["layer"])["techniques"].append("bias_correction")
        row(r["layer"])["mean_abs_shift"] = float(f"{r['mean_abs_shift']:.4g}")
    return list(rows.values())
