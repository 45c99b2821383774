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
from .compare import add_verdict_args, kind_metrics, verdict_lines, verdict_options


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
    add_verdict_args(p)
    p.add_argument("--json", action="store_true", help="print report.json instead of the summary")
    p.add_argument("--calib", default=None, help="calibration data for stages that read data (keep it disjoint from --data)")
    p.add_argument("--calib-from-data", choices=("split", "same"), default=None,
                   help="without --calib: 'split' splits the --data directory by file into disjoint calibration and evaluation halves; 'same' calibrates on the evaluation data (optimistic; the report says so)")
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
    for key, value in (("name", args.name), ("runs_dir", args.runs_dir), ("data", args.data), ("calib", args.calib), ("calib_from_data", args.calib_from_data), ("preprocess", args.preprocess), ("limit", args.limit)):
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
    verdict = verdict_options(args)
    cmp.update({k: v for k, v in verdict.items() if v is not None and k not in ("output_kinds", "default_thresholds")})
    for key in ("atol", "rtol"):
        if getattr(args, key) is not None:
            cmp[key] = getattr(args, key)
    if verdict["output_kinds"]:
        cmp["output_kinds"] = list(cmp.get("output_kinds", ())) + list(verdict["output_kinds"])
    if not verdict["default_thresholds"]:
        cmp["default_thresholds"] = False
    d["compare"] = cmp
    if args.no_bench:
        d["skip_bench"] = True
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
    return exit_status(result.report)


def exit_status(report: dict) -> int:
    """The job's exit status (compress and demo): 0 when every output met its kind's thresholds, 1 when one failed."""
    return 0 if report["passed"] else 1


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
        lines.append(f"stage {s['name']}: {s['seconds']:.1f} s")
    lines.append(f"compression ratio: {_x(c['ratio_disk'])} on disk ({c['bytes_original']:,} -> {c['bytes_compressed']:,} bytes), {_x(c['ratio_parameters'])} in parameters ({c['parameters_original']:,} -> {c['parameters_compressed']:,})")
    lines.append(f"pruning rate: {m['pruning_rate']['percent']:.2f}% ({m['pruning_rate']['pruned']:,} of {m['pruning_rate']['total']:,} parameters)")
    if m["quantization_error"]:
        q = m["quantization_error"]
        lines.append(f"output error vs original: max abs {q['max_abs']:.3g}, mean abs {q['mean_abs']:.3g}")
    for name, o in r["compare"]["outputs"].items():
        lines.append(f"output {name} ({o['kind']}): cosine mean {o['cosine_mean']:.6f}{kind_metrics(o)} over {r['compare']['samples']} samples")
    if "bench" in r:
        for batch, res in r["bench"]["results"].items():
            o, k = res["original"], res["compressed"]
            lines.append(f"latency batch {batch}: original p50 {o['p50_ms']:.2f} ms (p90 {o['p90_ms']:.2f}, p99 {o['p99_ms']:.2f}); compressed p50 {k['p50_ms']:.2f} ms (p90 {k['p90_ms']:.2f}, p99 {k['p99_ms']:.2f}); speedup {r['bench']['speedup_vs_first'][batch]['compressed']:.2f}x")
    lines += [f"note: {n}" for n in r.get("notes", [])]
    lines.append(verdict_lines(r["compare"]["failures"]))
    return "\n".join(lines)


def _x(v) -> str:
    return f"{v:.2f}x" if v is not None else "n/a"
