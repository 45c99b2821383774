"""``trtcompress compress MODEL [--stages ...|--recipe FILE] [--data ...] [--name RUN] [--resume]``

The main job: export (for a torch model), the compression stages, then compare and bench against
the FP32 baseline; everything lands in ``runs/<name>/`` with ``report.json`` and the run's recipe
(``recipe.toml``: ``--recipe`` reads it back to the same run). ``--resume`` reuses the stages an
earlier (interrupted) run finished; ``compress --name RUN --resume`` alone resumes RUN's recipe.
"""
from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

from .common import Output, add_config_args, add_data_args, add_runner_args, given_args, log
from .compare import add_verdict_args, kind_metrics, verdict_lines


def add_parser(sub) -> argparse.ArgumentParser:
    p = sub.add_parser("compress", help="the main job: export, compress, compare, bench, report", description=__doc__)
    add_job_args(p)
    return p


# help of the CompressConfig fields (and its nested configs') that are flags; defaults come from
# the dataclasses (cli.common.add_config_args)
HELP = {
    "name": "run name (none: run-<date>-<time>)",
    "runs_dir": "where run directories go",
    "overwrite": "replace an earlier run of the same --name (never a directory that is not a run)",
    "cache": "store each finished stage in RUNS_DIR/.cache so a run can be resumed (--no-cache: store nothing)",
    "resume": "reuse the stored stages whose input model, config and data are unchanged, and replace an earlier run of the same --name; without MODEL and --recipe, resume the run --name with its recipe.toml",
    "calib_from_data": "without --calib: 'split' splits the --data directory by file into disjoint calibration and evaluation halves; 'same' calibrates on the evaluation data (optimistic; the report says so)",
    "calib": "calibration data for stages that read data (keep it disjoint from --data)",
    "target_trt": "write what this TensorRT takes (e.g. 8.6, 10.3): its opset, Q/DQ only where it has INT8 kernels, Tensor Core rank multiples; then build the engine where TensorRT is installed",
    "calibration_cache": "with --target-trt <= 10: also write the TensorRT calibration cache (for the FP32 ONNX)",
    "normalize": "run the normalize stage first (constant/shape folding, Pad and BatchNorm folds, no-op removal) and the cleanup after the last stage",
    "skip_bench": "skip the latency benchmark (also --no-bench)",
    "opset": "ONNX opset for the export",
    "dynamic_batch": "export with a dynamic batch dimension (--static: a fixed one)",
    "exporter": "torch exporter",
    "check_batches": "random batches the export is checked on against torch",
    "dynamic": "more dynamic dimensions than the batch: x:0,2,3 or x:0=batch,2=height,3=width",
    "external_data": "write the exported weights as external data (default: only over the protobuf limit)",
    "batch_sizes": "benchmark batch sizes",
    "warmup": "benchmark: untimed runs at the start of every turn",
    "iterations": "benchmark iterations per model and batch size",
    "duration": "benchmark: seconds per model and batch size instead of --iterations",
    "rounds": "benchmark: interleaved rounds",
    "budget": "benchmark: seconds per batch size for both models' runs, warm-up included; a slow model gets fewer iterations (at least one per round)",
}


def add_job_args(p: argparse.ArgumentParser, model_required: bool = True, ray: bool = True) -> None:
    """compress's arguments (``ray``: with its ``--ray``, calibration on Ray; sweep has its own)."""
    from ..benchmark import BenchConfig
    from ..job import CompressConfig
    from ..torch_export.config import EXPORTERS, ExportConfig
    from .ray_arg import COMPRESS_HELP, add_ray_arg

    if model_required:
        p.add_argument("model", nargs="?", help="an .onnx file, or a torch model: pkg.module:factory, file.py:factory, .pt2, TorchScript (default: the recipe's)")
    p.add_argument("--stages", default=None, help="comma-separated stages with default options, in order")
    p.add_argument("--recipe", default=None, help="TOML or JSON file with a compress config (stages with options, data, targets, thresholds), e.g. a run's recipe.toml; flags override it")
    # fields of CompressConfig and its nested configs; data, preprocess, batch, limit come with the data group
    add_config_args(p, CompressConfig, skip=("model", "data", "preprocess", "batch", "limit", "backend", "ray"), help=HELP, choices={"calib_from_data": ("split", "same")})
    if ray:
        add_ray_arg(p, COMPRESS_HELP)
    p.add_argument("--no-bench", dest="skip_bench", action="store_true", default=None, help="same as --skip-bench")
    e = p.add_argument_group("export (torch models)")
    add_config_args(e, ExportConfig, skip=("inputs", "seed"), help=HELP, split=(), metavars={"dynamic": "NAME:AXES"}, choices={"exporter": EXPORTERS})
    e.add_argument("--static", dest="dynamic_batch", action="store_false", default=None, help="same as --no-dynamic-batch")
    add_verdict_args(p)
    b = p.add_argument_group("benchmark")
    job_bench = next(f.default for f in dataclasses.fields(CompressConfig) if f.name == "bench")
    add_config_args(b, BenchConfig, skip=("seed", "data", "preprocess", "inputs"), help=HELP, metavars={"batch_sizes": "N,N"}, defaults=job_bench)
    add_data_args(p, default=None)
    add_runner_args(p)
    p.set_defaults(backend=None)  # CompressConfig.backend holds the default; a recipe's backend stands unless --backend is given


def build_config(args: argparse.Namespace, model: str | None = None, defaults: dict | None = None):
    """The CompressConfig: the dataclass defaults, then ``defaults``, the recipe, then the flags given."""
    from ..benchmark import BenchConfig
    from ..comparison import CompareConfig
    from ..errors import ConfigError
    from ..job import CompressConfig
    from ..runners import RunnerOptions
    from ..torch_export.config import ExportConfig

    from ..recipe import read_recipe

    d: dict = dict(defaults or {})
    recipe = args.recipe or _resumed_recipe(args, model)
    if recipe:
        d.update(read_recipe(recipe))
    d["model"] = model or getattr(args, "model", None) or d.get("model", "")
    d.update(given_args(args, CompressConfig))
    for key, value in (("data", args.data), ("preprocess", args.preprocess), ("limit", args.limit), ("batch", args.batch)):
        if value is not None:
            d[key] = value
    base = CompressConfig(model=d["model"])
    for key, typ in (("export", ExportConfig), ("compare", CompareConfig), ("bench", BenchConfig), ("runner", RunnerOptions)):
        given = d.get(key, {})
        if not isinstance(given, dict):
            raise ConfigError(f"CompressConfig.{key} must be {typ.__name__} (a mapping), got {type(given).__name__} {given!r}")
        d[key] = {**getattr(base, key).to_dict(), **given, **given_args(args, typ)}
    if args.inputs:
        d["export"]["inputs"] = args.inputs
    if args.opset and d.get("target_trt"):
        from ..trt.opset import export_opset

        export_opset(args.opset, args.opset, d["target_trt"])  # refuses an opset the target cannot parse
    if args.seed is not None:  # the seed of the export check's and the benchmark's random inputs
        d["export"]["seed"] = d["bench"]["seed"] = args.seed
    if args.backend is not None:
        d["backend"] = args.backend
    if args.stages:
        d["stages"] = [{"stage": s.strip()} for s in args.stages.split(",") if s.strip()]
    if not recipe:
        return CompressConfig.from_dict(d)
    try:
        return CompressConfig.from_dict(d)
    except ConfigError as e:
        raise ConfigError(f"recipe {recipe}: {e}") from e


def _resumed_recipe(args: argparse.Namespace, model: str | None) -> str | None:
    """``compress --name RUN --resume`` without a model or recipe: RUN's own recipe file."""
    if model or getattr(args, "model", None) or not getattr(args, "resume", None) or not args.name:
        return None
    from ..errors import ConfigError
    from ..job import CompressConfig
    from ..recipe import RECIPE_FORMATS

    run = Path(args.runs_dir or CompressConfig.runs_dir) / args.name
    found = [run / f"recipe{s}" for s in RECIPE_FORMATS if (run / f"recipe{s}").is_file()]
    if not found:
        raise ConfigError(f"no recipe to resume in {run} (a run stopped by Ctrl-C or killed leaves no run directory; its finished stages are in the stage cache): give MODEL and --recipe or flags again with --resume")
    return str(found[0])


def run(args: argparse.Namespace) -> Output:
    from ..job import compress

    result = compress(build_config(args), log=log, command=getattr(args, "command_line", None))
    return Output(result.report, lambda: format_report(result), exit_status(result.report))


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
        nodes = f" ({s['report']['nodes_before']} -> {s['report']['nodes_after']} nodes)" if s["name"] == "normalize" else ""
        reused = " (reused from the stage cache)" if s.get("cached") else ""
        lines.append(f"stage {s['name']}: {s['seconds']:.1f} s{nodes}{reused}")
    if "tensorrt" in r:
        lines += _trt_lines(r)
    lines.append(f"compression ratio: {_x(c['ratio_disk'])} on disk ({c['bytes_original']:,} -> {c['bytes_compressed']:,} bytes), {_x(c['ratio_parameters'])} in parameters ({c['parameters_original']:,} -> {c['parameters_compressed']:,})")
    shipped = [f"packed for shipping {_x(c['ratio_packed'])} ({c['bytes_packed']:,} bytes, 'trtcompress pack')"] if "bytes_packed" in c else []
    shipped.append(f"weights in memory {_x(c['ratio_in_memory'])} ({c['weight_bytes_in_memory_original']:,} -> {c['weight_bytes_in_memory_compressed']:,} bytes)")
    if "bytes_engine" in c:
        shipped.append(f"engine {c['bytes_engine']:,} bytes")
    lines.append("  " + "; ".join(shipped))
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


def _trt_lines(r: dict) -> list[str]:
    t = r["tensorrt"]
    lines = [f"TensorRT {t['version']}: {t['opset']}"] + [f"  {n}" for n in t.get("stages", [])]
    for s in r["stages"]:
        for node, why in s.get("report", {}).get("no_int8_kernel", {}).items():
            lines.append(f"  left float: {node}: {why}")
    engine = t.get("engine", {})
    lines.append(f"  engine: {engine['path']}" if engine.get("built") else f"  engine not built: {engine.get('why', 'the run stopped before the build')}")
    return lines


def _x(v) -> str:
    return f"{v:.2f}x" if v is not None else "n/a"
