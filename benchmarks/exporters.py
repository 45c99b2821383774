"""The same network whatever exported it: EfficientNet-Lite0 from the TorchScript exporter against
the dynamo export, both quantized the way ``trtcompress quantize`` does (normalize first, cleanup
after), measured in one run (ONNX Runtime, 2 threads).

    python benchmarks/exporters.py [--batches 1,32] [--iterations 24] [--rounds 8] [--photos eval|heldout]

Per exporter: node counts before/after normalisation; the CPU form's and the TensorRT form's
latency ratio over that exporter's own FP32 file (the user's file as exported), timed interleaved
with the other exporter's models; top-1 agreement with FP32 on the photos' eval split (TensorRT
form with exact Q/DQ arithmetic). One calibration table (photos' calib split) per exporter, each
from its own graph. Prints JSON lines and a Markdown table.
"""
from __future__ import annotations

import argparse
import datetime
import json
import platform
import sys
import warnings
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _int8_models import WORK, eval_batches, session  # noqa: E402

from trtcompress.benchmark import BenchConfig, bench  # noqa: E402
from trtcompress.model_io import load_model, save_model  # noqa: E402
from trtcompress.quant.lower_cpu import cpu_has_vnni  # noqa: E402
from trtcompress.runners import RunnerOptions  # noqa: E402
from trtcompress.stages.normalize import with_normalize  # noqa: E402
from trtcompress.stages.quantize import QuantizeConfig, quantize  # noqa: E402

EXPORTERS = ("torchscript", "dynamo")


def export(exporter: str) -> Path:
    path = WORK / f"efficientnet_lite0-{exporter}.onnx"
    if path.is_file():
        return path
    import torch

    from trtcompress import zoo

    WORK.mkdir(parents=True, exist_ok=True)
    model = zoo.efficientnet_lite0().eval()
    x = (torch.randn(1, 3, 224, 224),)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if exporter == "torchscript":
            torch.onnx.export(model, x, str(path), dynamo=False, opset_version=17, input_names=["x"], output_names=["logits"],
                              dynamic_axes={"x": {0: "batch"}, "logits": {0: "batch"}})
        else:
            torch.onnx.export(model, x, str(path), dynamo=True, input_names=["x"], output_names=["logits"], opset_version=18,
                              dynamic_shapes=({0: torch.export.Dim("batch")},), external_data=False)
    return path


def quantized(exporter: str, src: Path, target: str, table: Path) -> tuple[Path, dict]:
    out = WORK / f"efficientnet_lite0-{exporter}-{target}.onnx"
    cfg = QuantizeConfig(target=target, calib="photos:calib", batch=32, progress=False, table=str(table) if table.is_file() else None)
    result = with_normalize(quantize, load_model(src), cfg)
    if not table.is_file():
        table.write_text(result.artifacts["calibration.json"])
    save_model(result.model, out)
    return out, result.report


def _outputs(path: Path, batches, optimize: bool = True) -> np.ndarray:
    s = session(path, optimize=optimize)
    return np.concatenate([s.run(None, {"x": x})[0] for x in batches])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--batches", default="1,32")
    ap.add_argument("--iterations", type=int, default=24)
    ap.add_argument("--rounds", type=int, default=8)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--photos", default="eval", help="photo split the top-1 agreement is measured on: eval (= tune) or heldout")
    args = ap.parse_args()
    batches = tuple(int(b) for b in args.batches.split(","))
    print(f"# {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC, {platform.processor() or platform.machine()}, VNNI: {cpu_has_vnni()}, threads {args.threads}")
    files, rows = {}, {}
    eval_x, _ = eval_batches("efficientnet_lite0", args.photos)
    for exporter in EXPORTERS:
        src = export(exporter)
        table = WORK / f"efficientnet_lite0-{exporter}.calib.json"
        table.unlink(missing_ok=True)  # calibrate each exporter's graph afresh
        trt, trt_report = quantized(exporter, src, "tensorrt", table)
        cpu, cpu_report = quantized(exporter, src, "cpu", table)
        ref = _outputs(src, eval_x)
        norm = trt_report["normalize"]
        rows[exporter] = {
            "nodes_exported": norm["nodes_before"], "nodes_normalized": norm["nodes_after"], "ops_removed": norm["ops_removed"],
            "top1_cpu": float(np.mean(_outputs(cpu, eval_x).argmax(1) == ref.argmax(1))),
            "top1_tensorrt": float(np.mean(_outputs(trt, eval_x, optimize=False).argmax(1) == ref.argmax(1))),
            "samples": len(ref), "cpu_int8_layers": cpu_report["cpu"]["int8_layers"], "cpu_float_layers": cpu_report["cpu"]["float_layers"],
        }
        files.update({f"{exporter} fp32": src, f"{exporter} cpu": cpu, f"{exporter} tensorrt": trt})
    res = bench(list(files.values()), BenchConfig(batch_sizes=batches, warmup=3, iterations=args.iterations, rounds=args.rounds),
                options=RunnerOptions(threads=args.threads), labels=list(files))
    for exporter in EXPORTERS:
        for b in batches:
            fp32 = res.results[b][f"{exporter} fp32"]["p50_ms"]
            for form in ("fp32", "cpu", "tensorrt"):
                ms = res.results[b][f"{exporter} {form}"]["p50_ms"]
                rows[exporter][f"b{b} {form} p50_ms"] = round(ms, 2)
                rows[exporter][f"b{b} {form} speedup"] = round(fp32 / ms, 3)
        print(json.dumps({"exporter": exporter, **rows[exporter]}))
    print("\n| exporter | nodes exported -> normalized | batch | FP32 p50 ms | CPU form p50 ms | CPU speedup vs own FP32 | TensorRT form in ORT speedup | top-1 CPU | top-1 TensorRT (exact Q/DQ) |")
    print("|---|---|---|---|---|---|---|---|---|")
    for exporter, r in rows.items():
        for b in batches:
            print(f"| {exporter} | {r['nodes_exported']} -> {r['nodes_normalized']} | {b} | {r[f'b{b} fp32 p50_ms']:.2f} | {r[f'b{b} cpu p50_ms']:.2f} | "
                  f"{r[f'b{b} cpu speedup']:.2f}x | {r[f'b{b} tensorrt speedup']:.2f}x | {100 * r['top1_cpu']:.2f}% | {100 * r['top1_tensorrt']:.2f}% |")
    ts, dy = rows["torchscript"], rows["dynamo"]
    for b in batches:
        print(f"batch {b}: TorchScript CPU-form speed ratio / dynamo's = {ts[f'b{b} cpu speedup'] / dy[f'b{b} cpu speedup']:.3f}")
    print(f"top-1 difference (TorchScript - dynamo): CPU {100 * (ts['top1_cpu'] - dy['top1_cpu']):+.2f} points, TensorRT {100 * (ts['top1_tensorrt'] - dy['top1_tensorrt']):+.2f} points")


if __name__ == "__main__":
    main()
