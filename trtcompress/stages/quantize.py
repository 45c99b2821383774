"""The ``quantize`` stage: calibrate on the user's data, then write INT8 for TensorRT or the CPU.

One calibration serves both targets: the plan lists every tensor either lowering needs, the
calibration gives each an amax, and ``target`` picks the writer (explicit symmetric Q/DQ for
TensorRT, operator-form uint8 for ONNX Runtime on x86). A saved table (``table``) skips
calibration, so the second target costs no data pass.
"""
from __future__ import annotations

import contextlib
import dataclasses
import importlib.util
import logging
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import onnx

from ..config import Config
from ..data.base import SampleKeeper, model_inputs
from ..data.options import DataOptions, open_data
from ..errors import ConfigError, DataError, ModelError
from ..model_io import check_model, infer_shapes
from ..quant._ir import View, as_ir, name_main_nodes, shape_of, to_proto
from ..quant.centering import center_inputs
from ..quant.lower_cpu import CPU_LAYER_RULES, CPU_WEIGHT_TYPES, cpu_has_vnni, lower_cpu
from ..quant.placement import QuantPlan, apply_bounds, plan_quantization, subgraph_layers
from ..quant.qdq_trt import WEIGHT_FORMATS, write_trt_qdq
from ..quant.sensitivity import AnalysisBudget, analyse, fallback_to_target, parse_accuracy_target
from ..quant.table import CalibrationTable
from ..quant.trt_kernels import kernel_exclusions
from ..quant.trt_rules import check_trt_qdq
from ..contracts import After
from ..stage import StageResult, register_stage
from ..trt.version import parse_version
from ..weightless import held_weights, materialize

if TYPE_CHECKING:
    import onnx_ir as ir

__all__ = ["QuantizeConfig", "quantize", "TARGETS", "METHODS"]

log = logging.getLogger(__name__)

TARGETS = ("tensorrt", "cpu")
METHODS = ("entropy", "max", "percentile", "mse")
# thresholds recorded beside the method's for the range choice (the observed max always is)
RANGE_CANDIDATES = ("entropy", "mse", "percentile")


@dataclasses.dataclass(frozen=True)
class QuantizeConfig(Config):
    """INT8 post-training quantization.

    ``calib``: calibration data spec (npz dir, image folder, ...), read with ``preprocess``,
    ``batch`` (samples per run; the result does not depend on it) and ``limit``; ``inputs``:
    shapes for dynamic inputs ("x:1x3x224x224").
    ``table``: a saved calibration table (JSON) to use instead of calibrating.
    ``accuracy_target``: e.g. "top1>=0.95" or "cosine>=0.999" against FP32 on ``eval`` data; the
    most sensitive layers stay float until it holds; when it needs float layers, the stage first
    tries again with bias correction and (with torch) AdaRound added (``accuracy_techniques``) and
    keeps the run with fewer float layers. ``sensitivity_samples``: calibration samples
    kept for the range choice and the per-layer error report (0: skip both);
    ``sensitivity_share``: on a large model the analysis runs on fewer of them, so it costs at
    most this share of calibration's compute (at least 200 GMAC; 0: every kept sample; see
    sensitivity.AnalysisBudget). ``weights``: how the TensorRT form stores
    weights (float + Q/DQ, or int8 + DQ). ``cpu_weights``: weight type of CPU layers that read a
    signed tensor (auto, uint8, int7, int8; see trtcompress.quant.lower_cpu). ``cpu_layer_rule``:
    "auto" keeps float in the CPU form the convs where INT8 is slower there (a float output, so
    ConvInteger: depthwise, or few multiply-adds per output; benchmarks/cpu_int8_layers.py);
    "all" lowers every planned layer.
    ``trt_version``: TensorRT version the calibration cache is written for (e.g. "10.3.0").
    ``target_trt``: TensorRT version whose INT8 kernels the TensorRT form's Q/DQ placement respects
    (version-specific rules of quant.trt_kernels; the rules that hold for every version always apply).
    ``clip_bounds``: a ReLU6/Clip output keeps ``min(bound, observed max)`` as its range instead of
    the method's (which clips the pile of values at the bound; see placement.apply_bounds).
    ``refine_ranges``: per tensor, keep the method's amax or another candidate (observed max, the
    entropy/MSE/percentile thresholds of the same histogram), whichever gives the layers reading it
    less error on the sensitivity samples (see sensitivity.analyse).
    ``center_inputs``: in the TensorRT form, a graph input with a one-sided range (an image in
    [0, 1]) is centered before the Conv reading it, which keeps the same function and doubles the
    int8 resolution of the input (see quant.centering).
    ``quantize_outputs``: store the graph's outputs in 8 bits too (both forms). Off by default: a
    calibrated range clips an output's rare large values, which are often what it is for (a text
    detector's score peaks).
    ``cle``: cross-layer equalization of Conv/Gemm pairs through ReLU or nothing (not ReLU6) before
    calibrating; the float function is unchanged (quant.ptq.cle). ``bias_correction``: fold the
    mean output shift that weight rounding causes, measured on the calibration data for the
    written form's weight grid, into each layer's bias (quant.ptq.bias_correction). ``smoothquant``:
    alpha in [0, 1] of SmoothQuant's migration of MatMul/Gemm input ranges into their weights,
    folded into the LayerNorm or linear layer producing the input, else a Mul before the layers
    (quant.ptq.smoothquant). ``adaround``: learned weight rounding (AdaRound), layer by layer on
    the calibration data, on the written form's weight grid, ``adaround_iterations`` Adam steps per
    layer; needs torch (quant.ptq.adaround). All are off by default (measured in benchmarks/RESULTS.md).
    ``qat``: quantization-aware training after calibration (quant.qat): the float graph with fake
    quantization on the tensors the TensorRT form quantizes (weights per channel on the writers'
    max-abs rule, activations from the calibrated scales, learned LSQ-style unless
    ``qat_learn_scales`` is off) is distilled from the FP32 model for ``qat_steps`` Adam steps
    (``qat_lr``, batches of ``qat_batch``) on ``qat_data`` (default: the calibration data; label-free
    with crops and flips, or a built-in labelled dataset with labels, ``qat_alpha``); the trained
    weights and ranges are written back, so the written form ships the grid trained on. The
    accuracy target then searches on the trained model. ``qat_checkpoint``: a directory for
    checkpoints, from which an interrupted run resumes (compress keeps them in the stage cache).
    Torch runs on ``threads`` threads, one when 0. Needs torch.
    ``ray``: collect the calibration statistics with Ray tasks on this cluster address (``local``:
    ray.init()'s choice), the data split into ``ray_tasks`` shards (0: one per CPU of the cluster);
    the sensitivity analysis and range refinement then run in one Ray task; the same table, ranges
    and model as in this process (trtcompress.distributed).
    """

    method: str = "entropy"
    target: str = "tensorrt"
    per_channel: bool = True
    include: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()
    calib: str = ""
    preprocess: str | None = None
    batch: int | None = None  # None: calibration_batch() picks it
    limit: int | None = None
    inputs: tuple[str, ...] = ()
    table: str | None = None
    accuracy_target: str | None = None
    accuracy_techniques: bool = True
    eval: str | None = None
    eval_limit: int | None = None
    sensitivity_samples: int = 8
    sensitivity_share: float = 0.25
    weights: str = "float"
    cpu_weights: str = "auto"
    cpu_layer_rule: str = "auto"
    trt_version: str | None = None
    target_trt: str | None = None
    clip_bounds: bool = True
    refine_ranges: bool = True
    center_inputs: bool = True
    quantize_outputs: bool = False
    cle: bool = False
    bias_correction: bool = False
    smoothquant: float | None = None
    adaround: bool = False
    adaround_iterations: int = 200
    qat: bool = False
    qat_steps: int = 200
    qat_lr: float = 1e-5
    qat_batch: int = 16
    qat_data: tuple[str, ...] = ()
    qat_alpha: float | None = None
    qat_learn_scales: bool = True
    qat_augment: bool = True
    qat_checkpoint: str | None = None
    threads: int = 0
    progress: bool = True
    ray: str | None = None
    ray_tasks: int = 0

    def reads_calib_data(self) -> bool:
        return not self.table

    def takes_shared(self, field: str) -> bool:
        """Whether the job fills ``field`` from its own settings: QAT's checkpoints only when QAT runs."""
        return self.qat or field != "qat_checkpoint"

    def validate(self) -> None:
        if self.target not in TARGETS:
            raise ConfigError(f"target must be one of {', '.join(TARGETS)}, got {self.target!r}")
        if self.method not in METHODS:
            raise ConfigError(f"method must be one of {', '.join(METHODS)}, got {self.method!r}")
        if self.weights not in WEIGHT_FORMATS:
            raise ConfigError(f"weights must be one of {', '.join(WEIGHT_FORMATS)}, got {self.weights!r}")
        if self.cpu_weights not in CPU_WEIGHT_TYPES:
            raise ConfigError(f"cpu_weights must be one of {', '.join(CPU_WEIGHT_TYPES)}, got {self.cpu_weights!r}")
        if self.cpu_layer_rule not in CPU_LAYER_RULES:
            raise ConfigError(f"cpu_layer_rule must be one of {', '.join(CPU_LAYER_RULES)}, got {self.cpu_layer_rule!r}")
        if self.batch is not None and self.batch < 1:
            raise ConfigError(f"batch must be at least 1, got {self.batch}")
        for name in ("limit", "eval_limit"):
            v = getattr(self, name)
            if v is not None and v < 1:
                raise ConfigError(f"{name} must be at least 1, got {v}")
        if self.smoothquant is not None and not 0.0 <= self.smoothquant <= 1.0:
            raise ConfigError(f"smoothquant is the migration strength alpha in [0, 1], got {self.smoothquant}")
        if self.ray is not None:
            from ..distributed import check_ray

            check_ray()
        if self.ray_tasks < 0:
            raise ConfigError(f"ray_tasks must be >= 0 (0: one per CPU of the cluster), got {self.ray_tasks}")
        if self.adaround_iterations < 1:
            raise ConfigError(f"adaround_iterations must be at least 1, got {self.adaround_iterations}")
        if self.qat:
            self.qat_options()  # refuses bad qat_* values now
            if not (self.calib or self.qat_data):
                raise ConfigError("qat trains on data: give calib (--calib DATA) or qat_data (--qat-data DATA)")
            if importlib.util.find_spec("torch") is None:
                from .._optional import require

                require("torch", "quantization-aware training (qat)")
        if self.sensitivity_samples < 0:
            raise ConfigError(f"sensitivity_samples must be >= 0, got {self.sensitivity_samples}")
        if self.sensitivity_share < 0:
            raise ConfigError(f"sensitivity_share must be >= 0 (0: no limit), got {self.sensitivity_share}")
        if self.accuracy_target is not None:
            parse_accuracy_target(self.accuracy_target)
            if not self.eval:
                raise ConfigError("an accuracy target needs held-out data: give eval (--eval DATA), disjoint from the calibration data")
        DataOptions(preprocess=self.preprocess, inputs=self.inputs)  # refuses a bad --preprocess or --input now
        if self.target_trt:
            parse_version(self.target_trt)
        if self.trt_version:
            from ..quant.cache import trt_version_number

            trt_version_number(self.trt_version)  # 11.x has no calibration cache: refuse before calibrating

    def qat_options(self):
        from ..quant.qat import QatOptions

        return QatOptions(steps=self.qat_steps, lr=self.qat_lr, batch=self.qat_batch, alpha=self.qat_alpha, learn_scales=self.qat_learn_scales,
                          checkpoint=self.qat_checkpoint, threads=self.threads or QAT_TORCH_THREADS, progress=self.progress)


# torch threads of QAT when ``threads`` is 0, as AdaRound's: on the shared 2-core machine, two
# threads spin-waiting made a training step of EfficientNet-Lite0 about 5x slower than one
# (benchmarks/RESULTS.md, "Quantization-aware training after calibration")
QAT_TORCH_THREADS = 1


# Calibration batch when none is given: DEFAULT_BATCH, or more (at most AUTO_BATCH_MAX) while the
# calibrated tensors ONNX Runtime hands back per batch stay within ACTIVATION_BUDGET. Fewer, larger
# runs: 64 instead of 8 takes a tenth off the Fashion CNN's statistics pass (medians of 20
# interleaved runs). Fewer than 8 only where 8 samples' tensors pass LARGE_BUDGET: a VGG-16 SSD at
# 320x320 hands back 130 MB per sample, and batches of 8 (two in flight) peaked at 4.0 GB against
# 1.1 GB in batches of 1, at the same speed.
DEFAULT_BATCH = 8
AUTO_BATCH_MAX = 64
ACTIVATION_BUDGET = 64 << 20
LARGE_BUDGET = 256 << 20


def calibration_batch(model: "onnx.ModelProto | ir.Model", tensors: list[str], config: QuantizeConfig) -> int:
    """``config.batch``, or the batch the budget allows for ``tensors`` (``model`` shape-inferred)."""
    if config.batch:
        return config.batch
    g = View(as_ir(model))
    per_sample = 0
    for name in tensors:
        shape = shape_of(g.value(name))
        if shape is None or not all(shape[1:]):  # unknown, or a dynamic / zero dimension
            return DEFAULT_BATCH
        per_sample += 4 * int(np.prod(shape[1:]))
    if per_sample * DEFAULT_BATCH > LARGE_BUDGET:
        return max(1, LARGE_BUDGET // per_sample)
    return max(DEFAULT_BATCH, min(AUTO_BATCH_MAX, ACTIVATION_BUDGET // max(per_sample, 1)))


def _fixed_batch(model: onnx.ModelProto) -> int | None:
    """The model's fixed batch size (None when dynamic): the size its feeds must have."""
    first = model_inputs(model)[0].shape if model_inputs(model) else ()
    return first[0] if first and isinstance(first[0], int) else None


def _source(model: onnx.ModelProto, spec: str, config: QuantizeConfig, limit: int | None):
    options = DataOptions(batch=config.batch, limit=limit, preprocess=config.preprocess, inputs=config.inputs)
    return open_data(spec, model_inputs(model), options)


def _calibrate(model: onnx.ModelProto, plan: QuantPlan, config: QuantizeConfig, keeper: SampleKeeper | None = None, record: dict | None = None) -> CalibrationTable:
    if config.table:
        path = Path(config.table)
        if not path.is_file():
            raise DataError(f"calibration table not found: {path}; give the JSON written by a previous quantize run")
        return CalibrationTable.from_json(path.read_text())
    if not config.calib:
        raise ConfigError("give calibration data (--calib DATA: an .npz/.npy directory or an image folder with --preprocess) or a saved table (--table FILE)")
    try:
        from ..quant.calibrate import CollectConfig, calibrate
    except ImportError as e:  # pragma: no cover - only before the calibration module is installed
        raise ModelError(f"calibration is not available in this installation ({e}); give a saved table with --table") from e
    collect = CollectConfig(threads=config.threads, progress=config.progress)
    # a bounded (ReLU6) tensor's range is its observed max whatever the method (apply_bounds)
    max_only = {t: plan.bounds[t] for t in plan.activation_tensors if t in plan.bounds} if config.clip_bounds else {}
    candidates = RANGE_CANDIDATES if config.refine_ranges else ()
    if config.ray is not None:  # shards read and counted by Ray tasks, merged here: the same table
        from ..distributed.ray_calibrate import RayCollector, RayOptions, ShardedData

        collector = RayCollector(RayOptions(address=config.ray, tasks=config.ray_tasks))
        data = ShardedData(config.calib, DataOptions(batch=config.batch, limit=config.limit, preprocess=config.preprocess, inputs=config.inputs), keeper)
        table = calibrate(model, plan.activation_tensors, data, method=config.method, config=collect, max_only=max_only, candidates=candidates, collector=collector)
        if record is not None:
            record.update(collector.report)
        return table
    source = _source(model, config.calib, config, config.limit)
    if keeper is not None:
        source = keeper.watch(source)
    return calibrate(model, plan.activation_tensors, source, method=config.method, config=collect, max_only=max_only, candidates=candidates)


def _scales_summary(table: CalibrationTable, tensors: list[str]) -> dict[str, Any]:
    pairs = sorted((float(table.amax[t]), t) for t in tensors if t in table.amax)
    if not pairs:
        return {"tensors": 0}
    mid = len(pairs) // 2  # the median by hand: np.median's first call imports numpy.ma
    return {
        "tensors": len(pairs),
        "amax_min": pairs[0][0],
        "amax_median": (pairs[mid][0] + pairs[~mid][0]) / 2,
        "amax_max": pairs[-1][0],
        "smallest": pairs[:3],
        "largest": pairs[::-1][:3],
    }


def _artifacts(table: CalibrationTable, config: QuantizeConfig) -> dict[str, str | bytes]:
    out: dict[str, str | bytes] = {"calibration.json": table.to_json()}
    if config.trt_version:
        try:
            from ..quant import cache as trt_cache  # written by the calibration cache module
        except ImportError:
            log.warning("TensorRT calibration cache writer is not installed; skipping the cache")
        else:
            out["calibration.cache"] = trt_cache.format_cache(table, config.trt_version)
    return out


def _plan(work: "ir.Model", config: QuantizeConfig, keep_float: dict[str, str] | None = None) -> QuantPlan:
    plan = plan_quantization(work, config.include, config.exclude, keep_float, quantize_outputs=config.quantize_outputs)
    if not config.per_channel:
        plan = dataclasses.replace(plan, weights=[dataclasses.replace(w, axis=None) for w in plan.weights])
    return plan


@register_stage("quantize", QuantizeConfig, ensures=("quantized",), after={
    "quantized": After("refuse", "the model is already quantized; quantize the float model once (--table reuses a saved calibration for the other target)"),
    # the Q/DQ forms need constant weights: shared ones are decoded first; on the int8 grid
    # (share --int8-grid) they quantize back to exactly their levels
    "shared": After("consume", "quantize decodes shared weights into its int8 weights"),
})
def quantize(model: onnx.ModelProto, config: QuantizeConfig) -> StageResult:
    """Plan, calibrate, measure per-layer error, meet the accuracy target, write the target form."""
    if not isinstance(model, onnx.ModelProto):
        raise ModelError(f"the quantize stage takes an ONNX model, got {type(model).__name__}; export it first")
    from ..share.decode import decode_shared

    model, decoded = decode_shared(model)
    # a model over 2 GB is worked on with its weights held once, beside a light copy; with --ray,
    # calibration and the sensitivity analysis share one connection to the cluster
    with held_weights(model) as base, _ray_connection(config.ray):
        out, report, artifacts = _quantize(base, config)
        retry = _with_techniques(config, report)
        if retry is not None:  # the target needed float layers: try the techniques first
            log.info("accuracy target needed %d float layer(s) without post-training techniques; trying %s", len(report["accuracy_target"]["kept_float"]), _techniques(retry))
            second = _quantize(base, retry)
            out, report, artifacts = _better(report, second[1], config, retry, (out, report, artifacts), second)
        materialize(out)
    check_model(out)
    if decoded:
        report["shared_weights_decoded"] = decoded
    return StageResult(out, report, artifacts)


def _ray_connection(address: str | None):
    if address is None:
        return contextlib.nullcontext()
    from ..distributed.ray_sensitivity import connected

    return connected(address)


def _techniques(config: QuantizeConfig) -> list[str]:
    return [name for name, on in (("cle", config.cle), ("bias_correction", config.bias_correction), ("adaround", config.adaround),
                                  ("smoothquant", config.smoothquant is not None), ("qat", config.qat)) if on]


def _with_techniques(config: QuantizeConfig, report: dict[str, Any]) -> QuantizeConfig | None:
    """The config to try when the accuracy target kept layers float: bias correction, and AdaRound
    where torch is installed, added to what was asked (None: nothing left to add, or not asked)."""
    from .._optional import available

    acc = report.get("accuracy_target")
    if not (config.accuracy_techniques and acc and acc["kept_float"] and config.calib):
        return None
    retry = dataclasses.replace(config, bias_correction=True, adaround=config.adaround or available("torch"))
    return retry if _techniques(retry) != _techniques(config) else None


def _better(first: dict[str, Any], second: dict[str, Any], config: QuantizeConfig, retry: QuantizeConfig, a: tuple, b: tuple) -> tuple:
    """The run that meets the target with fewer float layers (the first on a tie); the report
    says what was tried."""
    def key(r: dict[str, Any]) -> tuple[bool, int]:
        return (not r["accuracy_target"]["met"], len(r["accuracy_target"]["kept_float"]))

    chosen = b if key(second) < key(first) else a
    chosen[1]["accuracy_target"]["tried"] = [
        {"techniques": _techniques(c), "met": r["accuracy_target"]["met"], "kept_float": len(r["accuracy_target"]["kept_float"]), "chosen": r is chosen[1]}
        for c, r in ((config, first), (retry, second))
    ]
    return chosen


def _quantize(model: onnx.ModelProto, config: QuantizeConfig) -> tuple[onnx.ModelProto, dict[str, Any], dict[str, str | bytes]]:
    work = infer_shapes(model)  # a new model: the caller's is never changed
    # one onnx-ir graph for placement, the kernel rules, centering and the TensorRT form; its
    # tensors wrap work's. Calibration, sensitivity and the CPU form read work, named the same.
    graph = as_ir(work)
    name_main_nodes(graph, work)
    plan = _plan(graph, config)
    inside = subgraph_layers(graph)
    if not plan.quantized_nodes and inside:
        scopes = sorted({s.split("/")[0] for _, _, s in inside})
        raise ModelError(
            f"nothing to quantize: the model's {len(inside)} Conv/Gemm/MatMul/RNN layers are all inside If/Loop/Scan bodies "
            f"(of {', '.join(scopes[:3])}), which quantize does not rewrite; export a graph without the control flow "
            "(e.g. with the condition fixed at export), or use sparsify/lowrank, which rewrite subgraphs"
        )
    if not plan.quantized_nodes:
        raise ConfigError("nothing to quantize: no Conv, ConvTranspose, Gemm or MatMul with a float activation input matched (check --include/--exclude)")
    if inside:
        names = ", ".join(n for n, _, _ in inside[:5]) + (f" and {len(inside) - 5} more" if len(inside) > 5 else "")
        log.warning("%d layer(s) inside If/Loop/Scan bodies stay float (quantize rewrites the main graph only): %s", len(inside), names)
    ptq_report = {}
    reference = work  # the accuracy target compares with the user's FP32 model, not a rewritten one
    undo: dict[str, dict[int, np.ndarray]] = {}  # float weights and biases of layers AdaRound / bias correction change
    if config.cle or config.bias_correction or config.adaround or config.smoothquant is not None:  # before calibration: ranges, Q/DQ and cache see the new weights
        from ..quant.ptq import PtqOptions, apply_ptq

        options = PtqOptions(config.cle, config.bias_correction, config.smoothquant, config.target, config.cpu_weights, config.cpu_layer_rule,
                             config.target_trt, threads=config.threads, adaround=config.adaround, adaround_iterations=config.adaround_iterations)
        work, ptq_report = apply_ptq(work, plan, options, (lambda: _source(work, config.calib, config, config.limit)) if config.calib else None, undo)
        graph = as_ir(work)  # the rewritten weights, with the same node names
        name_main_nodes(graph, work)
        plan = _plan(graph, config)
    config = dataclasses.replace(config, batch=calibration_batch(graph, plan.activation_tensors, config))
    # the layers' error is measured on a few calibration samples chosen by content (SampleKeeper),
    # so the result does not depend on the data's order or batching
    keeper = SampleKeeper(config.sensitivity_samples) if config.sensitivity_samples and (config.calib or config.eval) else None
    ray_run: dict[str, Any] = {}
    table = _calibrate(work, plan, config, keeper, ray_run)
    no_kernel: dict[str, str] = {}
    if config.target == "tensorrt":
        # after calibration: the table keeps every tensor, so it still serves the CPU form
        no_kernel = kernel_exclusions(graph, plan, parse_version(config.target_trt) if config.target_trt else None)
        if no_kernel:
            plan = _plan(graph, config, no_kernel)
    report: dict[str, Any] = {"target": config.target, "method": table.method, "calibration_samples": table.num_samples, "calibration_batch": config.batch}
    report.update(ptq_report)
    if config.target == "tensorrt":
        report["no_int8_kernel"] = no_kernel  # node -> why it stays float (also in plan.kept_float)
    if config.clip_bounds:
        report["raised_to_clip_bound"] = apply_bounds(plan, table)
    if "seconds" in table.details:
        report["calibration_seconds"] = table.details["seconds"]
    if ray_run:
        report["calibration_ray"] = ray_run
    table, centered_rows = center_inputs(graph, plan, table, enabled=config.center_inputs)
    if centered_rows and config.target == "tensorrt":
        report["centered_inputs"] = centered_rows

    ranking = []
    if config.sensitivity_samples and (config.calib or config.eval):
        if not keeper.seen:  # a saved table: no calibration pass went by
            for _ in keeper.watch(_source(work, config.calib or config.eval, config, config.limit)):
                pass
        keep = plan.bounds if config.clip_bounds else ()  # ReLU6 outputs already have their real range
        budget = AnalysisBudget(calibration_share=config.sensitivity_share or math.inf)
        size = budget.size(work, plan, table, len(keeper), table.num_samples, refine=config.refine_ranges, keep=keep)
        feeds = keeper.feeds(_fixed_batch(work) or size["batch"], limit=size["samples"])
        report["sensitivity"] = size
        if size["samples"] < size["of"]:
            log.info("sensitivity analysis on %d of %d kept samples (%.0f GMAC each: at most %g of calibration's compute; --sensitivity-share 0 for all)",
                     size["samples"], size["of"], size["gmacs_per_sample"], config.sensitivity_share)
        if config.ray is not None:  # the same analysis in a Ray task on the cluster: the same ranges and errors
            from ..distributed.ray_sensitivity import analyse_on_ray

            found, where = analyse_on_ray(config.ray, work, plan, table, feeds, refine=config.refine_ranges, keep=keep, threads=config.threads)
            if where is not None:
                report["sensitivity_ray"] = where
        else:
            found = analyse(work, plan, table, feeds, refine=config.refine_ranges, keep=keep, threads=config.threads)
        table, ranking = found.table, found.errors
        if config.refine_ranges:
            report["refined_ranges"] = found.refined
        report["layer_error"] = [e.to_dict() for e in ranking]

    if config.qat:  # after the ranges are final, before the accuracy target searches on the result
        work, table, report["qat"] = _qat(work, plan, table, reference, config, undo)
        graph = as_ir(work)  # the trained weights, with the same node names
        name_main_nodes(graph, work)

    if config.accuracy_target:
        target = parse_accuracy_target(config.accuracy_target)
        if not ranking:
            raise ConfigError("the accuracy target ranks layers by their error on calibration data: give calib data and sensitivity_samples > 0")
        eval_feeds = _source(work, config.eval, config, config.eval_limit)
        plan, history, met = fallback_to_target(work, plan, table, ranking, target, eval_feeds, threads=config.threads, log=log.info, reference=reference)
        kept = [n for n, r in plan.float_nodes.items() if r == "kept float for the accuracy target"]
        if undo and kept:  # AdaRound / bias correction wrote these for INT8: float layers get their float weights back
            from ..quant.ptq import restore

            if restore(work, undo, kept):
                graph = as_ir(work)
                name_main_nodes(graph, work)
        report["accuracy_target"] = {"target": str(target), "met": met, "kept_float": kept, "evaluations": history}
        if not met:
            log.warning("accuracy target %s not met even with every ranked layer float", target)

    from onnx_ir.passes import common as common_passes

    from ..graph.normalize import cleanup

    if config.target == "tensorrt":
        write_trt_qdq(graph, plan, table, weights=config.weights)  # in place: the graph's last use
        check_trt_qdq(graph)
        common_passes.RemoveUnusedNodesPass()(graph)  # no dead node or initializer ships
        out = to_proto(graph, like=work)
        if not cpu_has_vnni():
            # ONNX Runtime fuses symmetric int8 Q/DQ into uint8 x int8 kernels that saturate on
            # AVX2 without VNNI: measured on EfficientNet-Lite0, 35% top-1 agreement instead of 94%.
            report["notes"] = [
                "this CPU has no VNNI: ONNX Runtime's default int8 fusions saturate on this TensorRT-form model "
                "(trtcompress compare runs it with exact Q/DQ arithmetic; elsewhere use graph optimisation 'basic'). "
                "For a fast CPU model use --target cpu."
            ]
    else:
        lowered = lower_cpu(work, plan, table, weights=config.cpu_weights, layer_rule=config.cpu_layer_rule)
        out, _ = cleanup(lowered.model)  # no dead node or initializer ships
        report["cpu"] = {"ops": lowered.ops, "weight_types": lowered.weight_types, "signed_input_weights": lowered.signed_input_weights,
                         "int8_layers": len(plan.quantized_nodes) - len(lowered.float_layers), "float_layers": lowered.float_layers,
                         "kept_float": [{"layer": n, "why": why} for n, why in lowered.kept_float.items()]}
    del out.graph.value_info[:]
    report["plan"] = plan.to_dict()
    if inside:
        report["subgraph_layers_float"] = [{"layer": n, "op": op, "scope": s} for n, op, s in inside]
    report["scales"] = _scales_summary(table, plan.qdq_tensors)
    return out, report, _artifacts(table, config)


def _qat(work: onnx.ModelProto, plan: QuantPlan, table: CalibrationTable, reference: onnx.ModelProto, config: QuantizeConfig,
         undo: dict[str, dict[int, np.ndarray]]) -> tuple[onnx.ModelProto, CalibrationTable, dict[str, Any]]:
    """Quantization-aware training (quant.qat) of ``work``; the trained model, the table with the
    learned ranges, the report. ``undo`` receives the float weights of the layers QAT changed, so a
    layer the accuracy target keeps float gets them back."""
    from onnx import numpy_helper

    from ..quant.qat import quantization_aware
    from ..quant.qat.data import training_data

    specs = tuple(config.qat_data) or (config.calib,)
    data = training_data(work, specs, config.qat_batch, DataOptions(limit=config.limit, preprocess=config.preprocess, inputs=config.inputs), config.qat_augment)
    steps = None
    if config.target == "cpu":  # the CPU form's weight grids (int7: twice the step) and integer layers
        from ..quant.ptq import PtqOptions, weight_grids

        options = PtqOptions(config.cle, config.bias_correction, config.smoothquant, config.target, config.cpu_weights, config.cpu_layer_rule, config.target_trt)
        steps = {node: grid.step for node, grid in weight_grids(as_ir(work), plan, options).items()}
    result = quantization_aware(work, plan, table, reference, data.batches, data.labelled, data.digest, config.qat_options(), steps)
    trained = set(result.student.replay.param_index)
    before = {t.name: t for t in work.graph.initializer}

    for node in work.graph.node:
        if node.name in plan.quantized_nodes:
            for i in (1, 2):
                if i < len(node.input) and node.input[i] in before and node.input[i] in trained:
                    undo.setdefault(node.name, {}).setdefault(i, numpy_helper.to_array(before[node.input[i]]))
    if config.target == "cpu":
        result.report["note"] = ("trained on the CPU form's weight grids (int7 layers: twice the step; float layers: none) and the symmetric activation "
                                 "grid, which the CPU form maps exactly except on tensors it stores on amax / 255 (a twice finer grid)")
    return result.model, result.table, {"data": list(specs), "samples": data.samples, "labelled": data.labelled, **result.report}
