"""``trtcompress sweep MODEL --grid GRID.toml [--set KEY=V1,V2 ...] [--jobs N | --ray [ADDRESS]] [--resume]``

Every variant of a grid (calibration methods, targets, sparsity on or off, rank budgets,
precisions, or any recipe option) is an ordinary, resumable ``compress`` run in
``runs/<sweep>/<variant>/``; they run in parallel processes on this machine (``--jobs``) or as
Ray tasks (``--ray``), and the sweep ends in ``runs/<sweep>/sweep.html`` (and ``sweep.json``):
the Pareto fronts of accuracy against latency and against size, with the recipe of each point
on them. The other flags are compress's and set what every variant shares. ``--resume`` skips
the variants an earlier, interrupted run of the sweep finished; ``sweep --name SWEEP --resume``
alone resumes SWEEP with its own grid.

Grid file (TOML or JSON; ``[base]`` holds recipe keys every variant shares)::

    [grid]
    calibration = ["entropy", "percentile"]   # the quantize stage's method
    target = ["cpu", "tensorrt"]               # its form
    sparsity = [false, true]                   # a 2:4 sparsify stage
    rank = ["off", 0.5]                        # a low-rank stage at this fraction of the FLOPs
    precision = ["int8", "fp32"]               # a quantize stage, or none
    "quantize.per_channel" = [true, false]     # any STAGE.FIELD, or a compress option
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from .common import Output, log

__all__ = ["add_parser", "run"]

SWEEP_HELP = {
    "name": "the sweep's name: its directory under --runs-dir (default: the grid file's name, else 'sweep')",
    "runs_dir": "where the sweep directory goes",
    "resume": "continue the sweep --name: skip the variants that finished (a completed report.json of the same recipe) and rerun the rest with the stage cache",
    "overwrite": "run every variant of an existing sweep again",
}


def add_parser(sub) -> argparse.ArgumentParser:
    from ..distributed import LOCAL
    from .compress import add_job_args

    p = sub.add_parser("sweep", help="a grid of compress variants in parallel, ending in the Pareto fronts of accuracy against latency and size",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_job_args(p, ray=False)
    for action in p._actions:  # compress's flags, as a sweep reads them
        if action.dest in SWEEP_HELP:
            action.help = SWEEP_HELP[action.dest]
    g = p.add_argument_group("sweep")
    g.add_argument("--grid", default=None, metavar="FILE", help="TOML or JSON grid file: [grid] axes of values, optional recipe = FILE and [base] recipe keys")
    g.add_argument("--set", dest="axes", action="append", default=[], metavar="KEY=V1,V2",
                   help="an axis of the grid (repeatable; replaces the grid file's axis of that key), e.g. --set calibration=entropy,max")
    g.add_argument("--jobs", type=int, default=0, help="variants run at once in local processes (default: one per CPU, at most one per variant)")
    g.add_argument("--ray", dest="sweep_ray", nargs="?", const=LOCAL, default=None, metavar="ADDRESS",
                   help="run each variant as a Ray task on the cluster at ADDRESS (auto, HOST:6379, ray://HOST:10001; none: the cluster "
                        "RAY_ADDRESS names, else one on this machine), asking for --cpus-per-variant CPUs and one GPU where the variant "
                        "builds a TensorRT engine or runs on the GPU; paths must be readable where tasks run; needs trtcompress[ray]")
    g.add_argument("--cpus-per-variant", type=int, default=1, help="CPUs a variant's Ray task asks for (default: %(default)s)")
    g.add_argument("--dry-run", action="store_true", help="list the variants and their stages; run nothing")
    return p


def _sweep_name(args: argparse.Namespace) -> str:
    return args.name or (Path(args.grid).stem if args.grid else "sweep")


def _plan(args: argparse.Namespace):
    """The axes, the base config and the variants the flags (or the sweep being resumed) give."""
    from ..errors import ConfigError
    from ..job import CompressConfig
    from ..sweep import expand, parse_set, read_grid
    from ..sweep.driver import SWEEP_JSON
    from ..sweep.grid import make_axis
    from .compress import build_config

    runs_dir = args.runs_dir or CompressConfig.runs_dir
    if not (args.model or args.grid or args.axes or args.recipe) and args.resume and args.name:
        saved = Path(runs_dir) / args.name / SWEEP_JSON
        try:
            grid = json.loads(saved.read_text())["grid"]
        except (OSError, ValueError, KeyError, TypeError):
            raise ConfigError(f"no sweep to resume at {saved}: give MODEL and --grid/--set again with --resume") from None
        axes, base_map = [make_axis(k, v) for k, v in grid["axes"].items()], dict(grid["base"])
    else:
        axes, base_map = read_grid(args.grid) if args.grid else ([], {})
        given = [parse_set(text) for text in args.axes]
        axes = [a for a in axes if a.key not in {g.key for g in given}] + given
    if not axes:
        raise ConfigError("a sweep needs at least one axis: give --grid FILE or --set KEY=V1,V2 (e.g. --set calibration=entropy,max)")
    base_map.pop("name", None)
    base = build_config(args, model=args.model or base_map.get("model") or None, defaults=base_map)
    base = base.replace(name=None, overwrite=False, resume=False)
    name = _sweep_name(args)
    return axes, base, expand(base, axes, str(Path(base.runs_dir) / name)), name


def run(args: argparse.Namespace) -> Output:
    from ..sweep import SweepConfig, run_sweep

    sweep = SweepConfig(name=_sweep_name(args), runs_dir=args.runs_dir or SweepConfig.runs_dir, jobs=args.jobs, ray=args.sweep_ray,
                        cpus_per_variant=args.cpus_per_variant, resume=bool(args.resume), overwrite=bool(args.overwrite))
    axes, base, plans, name = _plan(args)
    if args.dry_run:
        data = {"name": name, "variants": [{"name": p.name, "axes": p.axes, "stages": [s["stage"] for s in p.config.to_dict()["stages"]]} for p in plans]}
        return Output(data, "\n".join(f"{v['name']}: {' -> '.join(v['stages']) or 'no stage'}" for v in data["variants"]))
    result = run_sweep(sweep.replace(runs_dir=base.runs_dir), plans, axes, base, command=getattr(args, "command_line", None), log=log)
    return Output(result.data, lambda: format_sweep(result), result.code)


def format_sweep(result) -> str:
    d = result.data
    lines = [f"sweep directory: {result.path}", f"page: {result.path / 'sweep.html'}"]
    width = max(len(v["name"]) for v in d["variants"])
    for v in d["variants"]:
        if v["status"] != "completed":
            lines.append(f"  {v['name']:<{width}}  {v['status']}: {(v.get('error') or {}).get('message', '')}")
            continue
        acc = f"{v['accuracy']:.4f}" if v.get("accuracy") is not None else "n/a"
        lat = f"{v['latency_ms']:.3g} ms" if v.get("latency_ms") is not None else "n/a"
        size = f"{v['size_bytes'] / 1e6:.3g} MB" if v.get("size_bytes") else "n/a"
        mark = " (from an earlier run)" if v.get("reused") else ""
        lines.append(f"  {v['name']:<{width}}  {d.get('metric') or 'accuracy'} {acc}, p50 {lat}, weights {size}{mark}")
    for cost, names in (d.get("fronts") or {}).items():
        lines.append(f"Pareto front, accuracy against {cost}: {', '.join(names) or 'none'}")
    return "\n".join(lines)
