"""``trtcompress quantize MODEL --calib DATA [--preprocess ...] --method entropy --target tensorrt|cpu -o OUT``

Calibrates on DATA (progress is shown), writes the INT8 model to OUT, the calibration table beside
it (OUT with .calib.json; reuse it with --table to lower for the other target without
recalibrating) and, with --report, the full report (per-layer error, layers kept float and why).
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from ..fileio import write_json, write_text
from .common import add_normalize_arg, normalize_line, run_normalized


def add_parser(sub) -> argparse.ArgumentParser:
    from ..quant.lower_cpu import CPU_WEIGHT_TYPES
    from ..quant.qdq_trt import WEIGHT_FORMATS
    from ..stages.quantize import METHODS, TARGETS

    p = sub.add_parser("quantize", help="INT8 post-training quantization: calibrate, write Q/DQ for TensorRT or the CPU form", description=__doc__)
    p.add_argument("model", help="FP32 ONNX model")
    p.add_argument("-o", "--output", required=True, help="quantized ONNX file to write")
    p.add_argument("--calib", default="", help="calibration data: a directory of .npz/.npy files or an image folder (with --preprocess)")
    p.add_argument("--preprocess", default=None, help="image preprocessing: a preset (imagenet, efficientnet-lite, mnist) and/or key=value,...")
    p.add_argument("--input", dest="inputs", action="append", default=[], metavar="NAME:DIMS", help="shape for a dynamic input, e.g. x:1x3x224x224 (repeatable)")
    p.add_argument("--batch", type=int, default=None, help="calibration batch size (the result does not depend on it; default: as many samples as fit a 64 MB activation budget, at most 64, or 8 when shapes are unknown)")
    p.add_argument("--limit", type=int, default=None, help="use at most this many calibration samples")
    p.add_argument("--method", choices=METHODS, default="entropy", help="calibration method (default: %(default)s)")
    p.add_argument("--target", choices=TARGETS, default="tensorrt", help="tensorrt: symmetric INT8 Q/DQ; cpu: ONNX Runtime's fast uint8 operator form (default: %(default)s)")
    p.add_argument("--table", default=None, help="use this saved calibration table (JSON) instead of calibrating")
    p.add_argument("--include", action="append", default=[], metavar="PATTERN", help="quantize only matching nodes: node name, op type, glob, or re:REGEX (repeatable)")
    p.add_argument("--exclude", action="append", default=[], metavar="PATTERN", help="keep matching nodes float (repeatable)")
    p.add_argument("--per-tensor-weights", action="store_true", help="one scale per weight tensor instead of per output channel")
    p.add_argument("--accuracy-target", default=None, metavar="METRIC>=VALUE", help="e.g. top1>=0.95 or cosine>=0.999 against FP32 on --eval data; the most sensitive layers stay float until met")
    p.add_argument("--eval", default=None, help="held-out data for --accuracy-target (same format and preprocessing as --calib)")
    p.add_argument("--eval-limit", type=int, default=None)
    p.add_argument("--sensitivity-samples", type=int, default=8, help="calibration samples for the range choice and the per-layer error report (0: skip both; default: %(default)s)")
    p.add_argument("--weights", choices=WEIGHT_FORMATS, default="float", help="TensorRT form: float weights + Q/DQ (every TensorRT version) or int8 + DQ (smaller file)")
    p.add_argument("--cpu-weights", choices=CPU_WEIGHT_TYPES, default="auto", help="CPU form: weight type of layers reading signed tensors (auto: int8 with VNNI, else int7)")
    p.add_argument("--trt-version", default=None, help="also write a TensorRT calibration cache for this version (e.g. 10.3.0)")
    p.add_argument("--no-clip-bounds", action="store_true", help="let the method clip ReLU6/Clip outputs below their bound (default: keep min(bound, observed max))")
    p.add_argument("--no-refine-ranges", action="store_true", help="keep the method's amax everywhere (default: per tensor, the candidate range (method, observed max, entropy, MSE, percentile) that gives its layers the least error)")
    p.add_argument("--no-center-inputs", action="store_true", help="TensorRT form: quantize a one-sided input (an image in [0, 1]) as it is (default: center it before the Conv reading it, same function, twice the int8 resolution)")
    p.add_argument("--threads", type=int, default=0, help="ONNX Runtime intra-op threads (0: default)")
    p.add_argument("--report", default=None, help="write the full report as JSON here")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    add_normalize_arg(p)
    return p


def run(args: argparse.Namespace) -> int:
    from ..model_io import load_model, save_model
    from ..stages.quantize import QuantizeConfig, quantize

    config = QuantizeConfig(
        method=args.method,
        target=args.target,
        per_channel=not args.per_tensor_weights,
        include=tuple(args.include),
        exclude=tuple(args.exclude),
        calib=args.calib,
        preprocess=args.preprocess,
        batch=args.batch,
        limit=args.limit,
        inputs=tuple(args.inputs),
        table=args.table,
        accuracy_target=args.accuracy_target,
        eval=args.eval,
        eval_limit=args.eval_limit,
        sensitivity_samples=args.sensitivity_samples,
        weights=args.weights,
        cpu_weights=args.cpu_weights,
        trt_version=args.trt_version,
        clip_bounds=not args.no_clip_bounds,
        refine_ranges=not args.no_refine_ranges,
        center_inputs=not args.no_center_inputs,
        threads=args.threads,
    )
    result = run_normalized(quantize, load_model(args.model), config, args)
    out = Path(args.output)
    save_model(result.model, out)
    written = [str(out)]
    stem = out.with_suffix("")
    for name, content in result.artifacts.items():
        path = Path(f"{stem}.{name.replace('calibration.', 'calib.')}")
        if isinstance(content, bytes):
            from ..fileio import atomic_path

            with atomic_path(path) as tmp:
                tmp.write_bytes(content)
        else:
            write_text(path, content)
        written.append(str(path))
    if args.report:
        write_json(args.report, result.report)
        written.append(args.report)
    if args.json:
        print(json.dumps(result.report, indent=2, default=str))
    else:
        print(format_report(result.report))
        print("wrote " + ", ".join(written))
    return 0


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
        if cpu["float_layers"]:
            lines.append(f"  CPU form runs in float (faster there, or no integer kernel): {', '.join(cpu['float_layers'])}")
    return "\n".join(lines)
