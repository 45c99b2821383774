"""``trtcompress compress MODEL [--stages ...|--recipe FILE] [--data ...] [--name RUN]``

The main job: export (for a torch model), the compression stages, then compare and bench against
the FP32 baseline; everything lands in ``runs/<name>/`` with ``report.json``.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from .common import add_data_args, add_runner_args, runner_options


def add_parser(sub) -> argparse.ArgumentParser:
    p = sub.add_parser("compress", help="the main job: export, compress, compare, bench, report", description=__doc__)
    add_job_args(p)
    return p


def add_job_args(p: argparse.ArgumentParser, model_required: bool = True) -> None:
    if model_required:
        p.add_argument("model", help="an .onnx file, or a torch model: pkg.module:factory, file.py:factory, .pt2, TorchScript")
    p.add_argument("--stages", default=None, help="comma-separated stages with default options, in order")
    p.add_argument("--recipe", default=None, help="JSON file with a compress config (stages with options, data, tolerances)")
    p.add_argument("--name", default=None, help="run name (default: run-<date>-<time>)")
    p.add_argument("--runs-dir", default=None, help="where run directories go (default: runs)")
    p.add_argument("--opset", type=int, default=None, help="ONNX opset for the export (default 18)")
    p.add_argument("--static", action="store_true", help="export with a fixed batch size")
    p.add_argument("--batch-sizes", default=None, help="benchmark batch sizes, comma-separated (default: 1)")
    p.add_argument("--iterations", type=int, default=None, help="benchmark iterations per model and batch size")
    p.add_argument("--no-bench", action="store_true", help="skip the latency benchmark")
    p.add_argument("--no-normalize", action="store_true", help="do not run the normalize stage first (constant/shape folding, Pad and BatchNorm folds) nor the cleanup after the last stage")
    p.add_argument("--min-cosine", type=float, default=None, help="fail the run below this cosine similarity to FP32")
    p.add_argument("--min-top1", type=float, default=None, help="fail the run below this top-1 agreement with FP32")
    p.add_argument("--json", action="store_true", help="print report.json instead of the summary")
    p.add_argument("--calib", default=None, help="calibration data for stages that read data (default: --data; keep them disjoint)")
    add_data_args(p, default=None)
    add_runner_args(p)


def build_config(args: argparse.Namespace, model: str | None = None, defaults: dict | None = None):
    from ..job import CompressConfig
    from ..errors import ConfigError

    d: dict = dict(defaults or {})
    if args.recipe:
        try:
            d.update(json.loads(Path(args.recipe).read_text()))
        except FileNotFoundError:
            raise ConfigError(f"recipe not found: {args.recipe}") from None
        except json.JSONDecodeError as e:
            raise ConfigError(f"recipe {args.recipe} is not valid JSON: {e}") from None
    d["model"] = model or args.model
    for key, value in (("name", args.name), ("runs_dir", args.runs_dir), ("data", args.data), ("calib", args.calib), ("preprocess", args.preprocess), ("limit", args.limit)):
        if value is not None:
            d[key] = value
    if args.batch is not None:
        d["batch"] = args.batch
    export = dict(d.get("export", {}))
    if args.inputs:
        export["inputs"] = args.inputs
    if args.opset:
        export["opset"] = args.opset
    if args.static:
        export["dynamic_batch"] = False
    d["export"] = export
    bench = dict(d.get("bench", {}))
    if args.batch_sizes:
        bench["batch_sizes"] = [int(b) for b in args.batch_sizes.split(",")]
    if args.iterations:
        bench["iterations"] = args.iterations
    bench.setdefault("iterations", 50)
    d["bench"] = bench
    cmp = dict(d.get("compare", {}))
    if args.min_cosine is not None:
        cmp["min_cosine"] = args.min_cosine
    if args.min_top1 is not None:
        cmp["min_top1"] = args.min_top1
    d["compare"] = cmp
    if args.no_bench:
        d["skip_bench"] = True
    if args.no_normalize:
        d["normalize"] = False
    d["backend"] = args.backend
    d["runner"] = runner_options(args).to_dict()
    if args.stages:
        d["stages"] = [{"stage": s.strip()} for s in args.stages.split(",") if s.strip()]
    return CompressConfig.from_dict(d)


def run(args: argparse.Namespace) -> int:
    from ..job import compress

    result = compress(build_config(args), log=lambda m: print(m, file=sys.stderr))
    if args.json:
        print(json.dumps(result.report, indent=2))
    else:
        print(format_report(result))
    return 0 if result.report["passed"] else 1


def format_report(result) -> str:
    r = result.report
    m = r["metrics"]
    c = m["compression"]
    lines = [f"run directory: {result.run_dir}", f"compressed model: {result.model_path}"]
    if "export" in r:
        e = r["export"]
        checks = ", ".join(f"{k} max abs err {v['max_abs']:.2g}" for k, v in e["check"].items())
        lines.append(f"export: {e['exporter']} exporter; {checks}")
    for s in r["stages"]:
        nodes = f" ({s['report']['nodes_before']} -> {s['report']['nodes_after']} nodes)" if s["name"] == "normalize" else ""
        lines.append(f"stage {s['name']}: {s['seconds']:.1f} s{nodes}")
    lines.append(f"compression ratio: {_x(c['ratio_disk'])} on disk ({c['bytes_original']:,} -> {c['bytes_compressed']:,} bytes), {_x(c['ratio_parameters'])} in parameters ({c['parameters_original']:,} -> {c['parameters_compressed']:,})")
    lines.append(f"pruning rate: {m['pruning_rate']['percent']:.2f}% ({m['pruning_rate']['pruned']:,} of {m['pruning_rate']['total']:,} parameters)")
    if m["quantization_error"]:
        q = m["quantization_error"]
        lines.append(f"output error vs original: max abs {q['max_abs']:.3g}, mean abs {q['mean_abs']:.3g}")
    for name, o in r["compare"]["outputs"].items():
        top1 = f", top-1 agreement {o['top1_agreement']:.2%}" if o["top1_agreement"] is not None else ""
        lines.append(f"output {name}: cosine mean {o['cosine_mean']:.6f}{top1} over {r['compare']['samples']} samples")
    if "bench" in r:
        for batch, res in r["bench"]["results"].items():
            o, k = res["original"], res["compressed"]
            lines.append(f"latency batch {batch}: original p50 {o['p50_ms']:.2f} ms (p90 {o['p90_ms']:.2f}, p99 {o['p99_ms']:.2f}); compressed p50 {k['p50_ms']:.2f} ms (p90 {k['p90_ms']:.2f}, p99 {k['p99_ms']:.2f}); speedup {r['bench']['speedup_vs_first'][batch]['compressed']:.2f}x")
    lines.append("PASSED" if r["passed"] else "FAILED: " + "; ".join(r["compare"]["failures"]))
    return "\n".join(lines)


def _x(v) -> str:
    return f"{v:.2f}x" if v is not None else "n/a"
