"""``trtcompress build MODEL.onnx -o model.engine [--fp16] [--shapes ...] [--dry-run]``

Builds a TensorRT engine (and ``model.engine.json``) through Polygraphy for the TensorRT and GPU
of this machine. ``--dry-run`` needs no TensorRT: it prints the builder configuration and the
equivalent trtexec command for ``--target-version``, or for 8.6, 10.3, 10.13 and 11.0 side by side.
"""
from __future__ import annotations

import argparse
import dataclasses
import typing

from .common import Output

HELP = "build a TensorRT engine from an ONNX model (--dry-run: show the configuration and trtexec line)"

_HELP = {
    "target_version": "TensorRT the engine is for, e.g. 10.3 (default: the installed one; --dry-run without it shows 8.6, 10.3, 10.13, 11.0)",
    "fp16": "FP16: the builder flag when weakly typed (8.6), else the ONNX is converted to float16 keeping LayerNorm/Softmax/reductions/Q/DQ float32",
    "sparse": "SPARSE_WEIGHTS: auto (when a layer follows 2:4), on, off (default: %(default)s)",
    "shapes": "one optimization profile in trtexec's syntax, each input as min,opt,max: x:1x3x224x224,x:8x3x224x224,x:32x3x224x224 (repeat for several profiles)",
    "opt_batch": "opt batch of the default profile of a dynamic-batch model (default: %(default)s; min is 1)",
    "max_batch": "max batch of the default profile (default: %(default)s)",
    "workspace_mib": "workspace memory pool limit in MiB",
    "builder_optimization_level": "0..5 (TensorRT's default 3; higher builds longer, may run faster)",
    "timing_cache": "timing cache file, read before and updated after the build",
    "dla_core": "build for this DLA core (Jetson); layers DLA cannot run fall back to the GPU",
    "gpu_fallback": "with --dla-core: no GPU fallback, every layer must run on the DLA",
    "version_compatible": "an engine later TensorRT versions of the same major can run",
    "hardware_compatibility": "none, ampere+ or same-compute-capability (default: %(default)s)",
    "weak_typing": "TensorRT 10.x: INT8/FP16 builder flags instead of strong typing (deprecated from 10.12)",
    "plugins": "plugin library (.so), Python plugin (.py) or folder name under plugins/ (repeatable)",
    "strip_weights": "TensorRT 10+: a weight-stripped plan (STRIP_PLAN); 'trtcompress refit' fills it from the packed artifact on the device",
    "refit": "off, identical (REFIT_IDENTICAL: refit with the build's own weights, full speed; the default with --strip-weights) or any (REFIT: new weights of the same shapes)",
}


_METAVAR = {"target_version": "VERSION", "sparse": "MODE", "shapes": "PROFILE", "opt_batch": "N", "max_batch": "N", "workspace_mib": "MIB",
            "builder_optimization_level": "LEVEL", "timing_cache": "PATH", "dla_core": "N", "hardware_compatibility": "LEVEL", "plugins": "PLUGIN", "refit": "MODE"}


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    from ..trt.config import BuildConfig

    p = sub.add_parser("build", help=HELP, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("model", help="ONNX model (FP32, FP16 or explicit Q/DQ)")
    p.add_argument("-o", "--output", help="engine path (default: MODEL with .engine)")
    p.add_argument("--dry-run", action="store_true", help="print the builder configuration and trtexec command; needs no TensorRT")
    g = p.add_argument_group("build options")
    hints = typing.get_type_hints(BuildConfig)
    for f in dataclasses.fields(BuildConfig):
        flag = "--" + f.name.replace("_", "-")
        hint = hints[f.name]
        if hint is bool and f.default is True:
            g.add_argument("--no-" + f.name.replace("_", "-"), dest=f.name, action="store_false", default=None, help=_HELP[f.name])
        elif hint is bool:
            g.add_argument(flag, dest=f.name, action="store_true", default=None, help=_HELP[f.name])
        elif typing.get_origin(hint) is tuple:
            g.add_argument(flag.rstrip("s") if f.name == "plugins" else flag, dest=f.name, action="append", default=None, metavar=_METAVAR[f.name], help=_HELP[f.name])
        else:
            typ = int if int in (typing.get_args(hint) or (hint,)) else str
            g.add_argument(flag, dest=f.name, type=typ, default=None, metavar=_METAVAR[f.name], help=_HELP[f.name].replace("%(default)s", str(f.default)))
    return p


def config_from_args(args: argparse.Namespace):
    from ..trt.config import BuildConfig

    changes = {}
    for f in dataclasses.fields(BuildConfig):
        v = getattr(args, f.name, None)
        if v is not None:
            changes[f.name] = tuple(v) if isinstance(v, list) else v
    return BuildConfig(**changes)


def _dry_run(args, config) -> Output:
    from ..errors import ConfigError
    from ..model_io import save_model, load_model
    from ..trt.build import DRY_RUN_VERSIONS, parsed_model, plan_build
    from ..trt.loaders import create_config_kwargs, enum_settings
    from ..trt.trtexec import parsed_onnx_path, trtexec_command

    from ..trt.plugins import resolve_plugins

    config = config.replace(plugins=resolve_plugins(config.plugins))  # a missing plugin is an error for every version
    versions = [config.target_version] if config.target_version else list(DRY_RUN_VERSIONS)
    results = []
    for v in versions:
        try:
            plan = plan_build(args.model, config, v)
        except ConfigError as e:
            if len(versions) == 1:
                raise
            results.append({"tensorrt": v, "error": str(e)})
            continue
        kwargs = create_config_kwargs(plan)
        kwargs["profiles"] = plan.to_dict()["profiles"] or None
        results.append({
            "tensorrt": v,
            "plan": plan.to_dict(),
            "polygraphy": {
                "NetworkFromOnnxPath": {"strongly_typed": plan.strongly_typed or None},
                "CreateConfig": {k: val for k, val in kwargs.items() if val not in (None, False)},
                "builder_config_at_build_time": [f"{a}({e}.{m})" if a == "set_flag" else f"{a}({e}.{m}, {val})" if a.startswith("set_") else f"{a} = {e}.{m}" if e else f"{a} = {val}" for a, e, m, val in enum_settings(plan)],
            },
            "trtexec": trtexec_command(plan, args.model, args.output),
        })
        out = parsed_onnx_path(plan, args.model)  # written once, for the first version that parses it
        key = "refit_onnx" if plan.refit != "off" else "fp16_onnx"
        if out != args.model and not any(r.get(key) for r in results):
            save_model(parsed_model(plan, load_model(args.model)), out)
            results[-1][key] = out
    return Output(results, lambda: _show_plans(results))


def _show_plans(results: list[dict]) -> None:
    for r in results:
        print(f"== TensorRT {r['tensorrt']}")
        if "error" in r:
            print(f"   cannot build: {r['error']}")
            continue
        plan = r["plan"]
        flags = [n for n in ("strongly_typed", "int8", "fp16", "sparse_weights", "version_compatible", "strip_weights") if plan[n]]
        if plan["refit"] != "off":
            flags.append(f"refit {plan['refit']}")
        print(f"   network: {'strongly typed' if plan['strongly_typed'] else 'weakly typed'}; flags: {', '.join(flags) or 'none'}; precisions expected: {', '.join(plan['precisions'])}")
        for i, prof in enumerate(plan["profiles"]):
            print(f"   profile {i}: " + "; ".join(f"{n} min {d['min']} opt {d['opt']} max {d['max']}" for n, d in prof.items()))
        print(f"   Polygraphy CreateConfig({', '.join(f'{k}={v!r}' for k, v in r['polygraphy']['CreateConfig'].items())})")
        for line in r["polygraphy"]["builder_config_at_build_time"]:
            print(f"   IBuilderConfig.{line}")
        if plan["sparse_layers"]:
            print(f"   2:4 layers: {len(plan['sparse_layers'])} ({', '.join(plan['sparse_layers'][:5])}{', ...' if len(plan['sparse_layers']) > 5 else ''})")
        for note in plan["notes"]:
            print(f"   note: {note}")
        if r.get("fp16_onnx"):
            print(f"   wrote the float16 ONNX {r['fp16_onnx']}")
        if r.get("refit_onnx"):
            print(f"   wrote the dense ONNX a refittable build parses {r['refit_onnx']}")
        print("   " + r["trtexec"].replace("\n", "\n   "))


def run(args: argparse.Namespace) -> Output:
    from pathlib import Path

    config = config_from_args(args)
    if not args.output:
        args.output = str(Path(args.model).with_suffix(".engine"))
    if args.dry_run:
        return _dry_run(args, config)
    from ..trt.build import build_engine

    result = build_engine(args.model, args.output, config)
    return Output(result.to_dict(), lambda: _show_build(result))


def _show_build(result) -> None:
    counts = ", ".join(f"{k} {v}" for k, v in result.report.get("precision_counts", {}).items())
    sp = result.report.get("sparsity", {})
    print(f"built {result.engine_path} with TensorRT {result.tensorrt_version} on {result.gpu['name']} in {result.seconds:.1f} s")
    print(f"layers by precision: {counts or 'unknown'}; 2:4 eligible {len(sp.get('eligible', []))}, sparse kernels picked {len(sp.get('picked', []))}")
    for w in result.warnings:
        print(f"WARNING: {w}")
    if result.plan.strip_weights:
        print(f"weight-stripped plan: {result.engine_path.stat().st_size:,} B; it runs once refitted: trtcompress refit {result.engine_path} ARTIFACT -o OUT")
    print(f"wrote {result.engine_path} and {result.sidecar_path}")
