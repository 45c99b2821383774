"""Argument groups shared by verbs; each maps onto one API object."""
from __future__ import annotations

import argparse

from ..data.preprocess import PreprocessConfig
from ..data.readers import ReaderOptions
from ..runners import RunnerOptions
from ..specs import parse_input_specs


def add_runner_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("runner")
    g.add_argument("--backend", default="onnxrt", help="onnxrt (default, CPU) or trt (needs TensorRT and a GPU)")
    g.add_argument("--threads", type=int, default=0, help="intra-op threads (0: backend default)")
    g.add_argument("--providers", default="cpu", help="ONNX Runtime providers in order, comma-separated (cpu, cuda)")
    g.add_argument("--optimization", choices=("disable", "basic", "extended", "all"), default="all",
                   help="ONNX Runtime graph optimisation; 'basic' runs TensorRT-form Q/DQ models with exact Q/DQ arithmetic (default: %(default)s)")


def runner_options(args: argparse.Namespace) -> RunnerOptions:
    return RunnerOptions(threads=args.threads, providers=tuple(p.strip() for p in args.providers.split(",") if p.strip()), optimization=args.optimization)


def add_data_args(p: argparse.ArgumentParser, default: str = "random") -> None:
    g = p.add_argument_group("data")
    g.add_argument("--data", default=default, help="random[:N], a directory of .npz/.npy files, or an image folder (default: %(default)s)")
    g.add_argument("--preprocess", default=None, help="image preprocessing: a preset (imagenet, efficientnet-lite, mnist) and/or key=value,... (resize, crop, mean, std, order, layout, dtype)")
    g.add_argument("--input", dest="inputs", action="append", metavar="NAME:DIMS[:DTYPE]", help="input shape for dynamic dims, e.g. x:1x3x224x224 (repeatable)")
    g.add_argument("--batch", type=int, default=None, help="samples per inference (default: as stored: one file, one yielded feed; 1 for random data)")
    g.add_argument("--limit", type=int, default=None, help="use at most this many samples")
    g.add_argument("--seed", type=int, default=0)


def reader_options(args: argparse.Namespace) -> ReaderOptions:
    specs = parse_input_specs(args.inputs)
    return ReaderOptions(
        batch_size=args.batch,
        limit=args.limit,
        seed=args.seed,
        preprocess=PreprocessConfig.parse(args.preprocess) if args.preprocess else None,
        shapes={s.name: s.concrete_shape(args.batch or 1) for s in specs} or None,
    )


def add_normalize_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--no-normalize", action="store_true",
                   help="take the graph as it is: no normalize stage first (constant/shape folding, Pad and BatchNorm folds, no-op removal) and no cleanup after")


def run_normalized(stage, model, config, args: argparse.Namespace):
    """Normalize first and clean up after, unless ``--no-normalize``."""
    from ..stages.normalize import with_normalize

    return with_normalize(stage, model, config, enabled=not getattr(args, "no_normalize", False))


def normalize_line(report: dict) -> str | None:
    n = report.get("normalize")
    if not n:
        return None
    done = ", ".join(f"{k} {v}" for k, v in sorted(n["ops_removed"].items())) or "nothing to remove"
    return f"normalized: {n['nodes_before']} -> {n['nodes_after']} nodes ({done})"
