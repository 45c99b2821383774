"""``trtcompress quantize MODEL --calib DATA [--preprocess ...] --method entropy --target tensorrt|cpu -o OUT``

Calibrates on DATA (progress is shown), writes the INT8 model to OUT, the calibration table beside
it (OUT with .calib.json; reuse it with --table to lower for the other target without
recalibrating) and, with --report, the full report (per-layer error, layers kept float and why).
"""
from __future__ import annotations

import argparse
import contextlib
from pathlib import Path

from ..fileio import atomic_path, json_text
from .common import Output, add_normalize_arg, normalize_line, run_normalized


# help of the QuantizeConfig fields; their defaults come from the dataclass (cli.common.add_config_args)
HELP = {
    "calib": "calibration data: a directory of .npz/.npy files or an image folder (with --preprocess)",
    "preprocess": "image preprocessing: a preset (imagenet, efficientnet-lite, mnist) and/or key=value,...",
    "inputs": "shape for a dynamic input, e.g. x:1x3x224x224 (NAME:DIMS)",
    "batch": "calibration batch size (the result does not depend on it; none: as many samples as fit a 64 MB activation budget, at most 64; 8, or fewer when 8 samples' activations pass 256 MB; 8 when shapes are unknown)",
    "limit": "use at most this many calibration samples",
    "method": "calibration method",
    "target": "tensorrt: symmetric INT8 Q/DQ; cpu: ONNX Runtime's fast uint8 operator form",
    "table": "use this saved calibration table (JSON) instead of calibrating",
    "include": "quantize only matching nodes: node name, op type, glob, or re:REGEX",
    "exclude": "keep matching nodes float",
    "per_channel": "one scale per weight output channel (--no-per-channel or --per-tensor-weights: one per tensor)",
    "accuracy_target": "e.g. top1>=0.95 or cosine>=0.999 against FP32 on --eval data; the most sensitive layers stay float until met",
    "accuracy_techniques": "when --accuracy-target needs float layers, first try again with bias correction and AdaRound (with torch) added, and keep the run with fewer float layers",
    "eval": "held-out data for --accuracy-target (same format and preprocessing as --calib)",
    "eval_limit": "use at most this many --eval samples",
    "sensitivity_samples": "calibration samples for the range choice and the per-layer error report (0: skip both)",
    "sensitivity_share": "on a large model, analyse only as many of those samples as cost this share of calibration's compute, counted in multiply-adds (at least 200 GMAC and 1 sample; 0: all)",
    "weights": "TensorRT form: float weights + Q/DQ (every TensorRT version) or int8 + DQ (smaller file)",
    "cpu_weights": "CPU form: weight type of layers reading signed tensors (auto: int8 with VNNI, else int7)",
    "cpu_layer_rule": "CPU form: auto keeps float the convs that would run ConvInteger (a float output) where that is slower than float (depthwise, or < 1024 multiply-adds per output); all quantizes every planned layer",
    "trt_version": "also write a TensorRT calibration cache for this version (e.g. 10.3.0)",
    "quantize_outputs": "store the graph's outputs in 8 bits too (default: outputs stay float; a calibrated range clips their rare large values)",
    "target_trt": "TensorRT form: also leave float the layers this version has no INT8 kernel for (8.x: depthwise Convs without ReLU)",
    "clip_bounds": "a ReLU6/Clip output keeps min(bound, observed max) as its range (--no-clip-bounds: the method may clip below the bound)",
    "refine_ranges": "per tensor, the candidate range (method, observed max, entropy, MSE, percentile) that gives its layers the least error (--no-refine-ranges: the method's amax everywhere)",
    "center_inputs": "TensorRT form: center a one-sided input (an image in [0, 1]) before the Conv reading it, same function, twice the int8 resolution",
    "cle": "cross-layer equalization of Conv/Gemm pairs joined by ReLU or nothing (ReLU6 pairs are left alone); same float function",
    "bias_correction": "fold each layer's mean output shift from weight rounding (measured on --calib data, for the written form's weights) into its bias",
    "smoothquant": "SmoothQuant alpha in [0, 1]: migrate MatMul/Gemm input outliers into the weights, folded into the LayerNorm or linear layer producing the input, else a Mul before the layers (e.g. 0.5; default: off)",
    "adaround": "learned weight rounding (AdaRound): per layer, round each weight up or down so the layer's output on --calib data stays closest to FP32, on the written form's grid (needs the torch extra)",
    "adaround_iterations": "AdaRound optimisation steps per layer",
    "qat": "quantization-aware training after calibration: fake quantization on the tensors the TensorRT form quantizes, distilled from FP32 on --calib data (or --qat-data), the trained weights and ranges written back (needs the torch extra)",
    "qat_steps": "QAT: Adam steps (cosine schedule)",
    "qat_lr": "QAT: learning rate",
    "qat_batch": "QAT: samples per step",
    "qat_data": "QAT: training data (default: --calib; without labels it distils label-free on crops and flips; a built-in labelled dataset, e.g. fashion-mnist:train:5000, adds the label loss)",
    "qat_alpha": "QAT: weight of the label loss (default: 0.5 with labels, 0 without)",
    "qat_learn_scales": "QAT: learn the activation scales from the calibrated ones, LSQ-style (--no-qat-learn-scales: keep the calibrated ranges)",
    "qat_augment": "QAT: random resized crops and flips of image inputs",
    "qat_checkpoint": "QAT: checkpoint directory; an interrupted run with the same model, data and settings resumes from it",
    "threads": "ONNX Runtime intra-op threads (0: default)",
    "ray_tasks": "with --ray: shards of the calibration data, one Ray task each (0: one per CPU of the cluster)",
    "progress": "show calibration progress",
}


def add_parser(sub) -> argparse.ArgumentParser:
    from ..quant.lower_cpu import CPU_LAYER_RULES, CPU_WEIGHT_TYPES
    from ..quant.qdq_trt import WEIGHT_FORMATS
    from ..stages.quantize import METHODS, TARGETS, QuantizeConfig
    from .common import add_config_args
    from .ray_arg import add_ray_arg

    p = sub.add_parser("quantize", help="INT8 post-training quantization: calibrate, write Q/DQ for TensorRT or the CPU form", description=__doc__)
    p.add_argument("model", help="FP32 ONNX model")
    p.add_argument("-o", "--output", required=True, help="quantized ONNX file to write")
    add_config_args(p, QuantizeConfig, skip=("ray",), flags={"inputs": "--input"}, help=HELP, split=(), metavars={"inputs": "NAME:DIMS", "include": "PATTERN", "exclude": "PATTERN"},
                    choices={"method": METHODS, "target": TARGETS, "weights": WEIGHT_FORMATS, "cpu_weights": CPU_WEIGHT_TYPES, "cpu_layer_rule": CPU_LAYER_RULES})
    add_ray_arg(p)
    p.add_argument("--per-tensor-weights", dest="per_channel", action="store_false", default=None, help="same as --no-per-channel")
    p.add_argument("--report", default=None, help="write the full report as JSON here")
    add_normalize_arg(p)
    return p


def run(args: argparse.Namespace) -> Output:
    from ..model_io import load_model, save_model
    from ..stages.quantize import QuantizeConfig, quantize
    from .common import config_from_args

    config = config_from_args(args, QuantizeConfig)
    result = run_normalized(quantize, load_model(args.model), config, args)
    out = Path(args.output)
    stem = out.with_suffix("")
    files = {Path(f"{stem}.{name.replace('calibration.', 'calib.')}"): content for name, content in result.artifacts.items()}
    if args.report:
        files[Path(args.report)] = json_text(result.report)
    # the model and its calibration files land together: each is written to a temporary name, and
    # the files are renamed in only after the model is, so a failure leaves none of them
    with contextlib.ExitStack() as stack:
        for path, content in files.items():
            tmp = stack.enter_context(atomic_path(path))
            tmp.write_bytes(content) if isinstance(content, bytes) else tmp.write_text(content)
        save_model(result.model, out)
    written = [str(out)] + [str(p) for p in files]
    return Output({**result.report, "written": written}, lambda: format_report(result.report) + "\nwrote " + ", ".join(written))


def _ptq_lines(report: dict) -> list[str]:
    """One line per post-training technique that ran (the per-layer rows are in --report)."""
    lines = []
    if "cle" in report:
        lines.append(f"  CLE: {len(report['cle']['pairs'])} layer pairs equalized ({report['cle']['seconds']} s)")
    if "smoothquant" in report:
        lines.append(f"  SmoothQuant: {len(report['smoothquant'].get('activations', []))} activations balanced ({report['smoothquant']['seconds']} s)")
    if "adaround" in report:
        done = [r for r in report["adaround"]["layers"] if "kept" not in r]
        if done:
            before = sorted(r["error_nearest"] for r in done)[len(done) // 2]
            after = sorted(r["error_learned"] for r in done)[len(done) // 2]
            gain = f"median relative output error {before:.3g} -> {after:.3g}"
        else:
            gain = "no layer improved"
        kept = len(report["adaround"]["layers"]) - len(done)
        lines.append(f"  AdaRound: {len(done)} layers learned ({gain}{f'; {kept} kept nearest rounding' if kept else ''}; {report['adaround']['seconds']} s)")
    if "bias_correction" in report:
        rows = report["bias_correction"]["layers"]
        lines.append(f"  bias correction: {len(rows)} layers, largest mean |shift| removed "
                     f"{max((r['mean_abs_shift'] for r in rows), default=0):.3g} ({report['bias_correction']['seconds']} s)")
    return lines


def format_report(report: dict) -> str:
    plan = report["plan"]
    lines = [line for line in (normalize_line(report),) if line] + [
        f"INT8 for {report['target']} ({report['method']} calibration on {report['calibration_samples']} samples): "
        f"{plan['quantized_nodes']} layers quantized, {plan['float_nodes']} nodes float"
    ]
    errors = report.get("layer_error", [])
    if errors:
        worst = ", ".join(f"{e['node']} ({e['op']}) {e['local_sqnr_db']} dB" for e in errors[:5])
        lines.append(f"  most sensitive layers (local SQNR): {worst}")
    lines += _ptq_lines(report)
    for node, why in report.get("no_int8_kernel", {}).items():
        lines.append(f"  left float: {node}: {why}")
    for c in report.get("centered_inputs", []):
        lines.append(f"  input {c['tensor']} in [{c['range'][0]:g}, {c['range'][1]:g}] centered on {c['center']:g} before its Conv: {c['gain_db']} dB finer int8 steps")
    acc = report.get("accuracy_target")
    if acc:
        kept = ", ".join(acc["kept_float"]) or "none"
        last = acc["evaluations"][-1] if acc["evaluations"] else {}
        lines.append(f"  accuracy target {acc['target']}: {'met' if acc['met'] else 'NOT met'}; kept float: {kept} (last evaluation {last})")
    for note in report.get("notes", []):
        lines.append(f"  note: {note}")
    if "cpu" in report:
        cpu = report["cpu"]
        lines.append(f"  CPU form: {cpu['int8_layers']} layers int8, ops {cpu['ops']}; weights {cpu['weight_types']}")
        kept = {k["layer"] for k in cpu.get("kept_float", [])}
        if cpu.get("kept_float"):
            why = sorted({k["why"] for k in cpu["kept_float"]})
            lines.append(f"  CPU form keeps float where INT8 does not pay ({'; '.join(why)}): {', '.join(k['layer'] for k in cpu['kept_float'])}")
        other = [n for n in cpu["float_layers"] if n not in kept]
        if other:
            lines.append(f"  CPU form runs in float (faster there, or no integer kernel): {', '.join(other)}")
    return "\n".join(lines)
