"""``trtcompress bench MODEL [MODEL...] [--batch-sizes 1,32] [--iterations N | --duration S]``

Models are measured in interleaved rounds in one run; ratios are against the first model.
"""
from __future__ import annotations

import argparse
import json

from .common import add_runner_args, runner_options


def add_parser(sub) -> argparse.ArgumentParser:
    p = sub.add_parser("bench", help="measure latency percentiles and throughput; ratios between models", description=__doc__)
    p.add_argument("models", nargs="+", help="ONNX models; the first is the baseline")
    p.add_argument("--batch-sizes", default="1", help="comma-separated batch sizes (default: %(default)s)")
    p.add_argument("--warmup", type=int, default=3, help="untimed runs at the start of every turn (each turn starts a fresh session)")
    p.add_argument("--iterations", type=int, default=100, help="timed runs per model and batch size")
    p.add_argument("--duration", type=float, default=None, help="seconds per model and batch size instead of --iterations")
    p.add_argument("--rounds", type=int, default=5, help="interleaved rounds")
    p.add_argument("--input", dest="inputs", action="append", metavar="NAME:DIMS[:DTYPE]", help="shape for dynamic non-batch dims, e.g. ids:1x128:int64; a named dimension marks the batch axis, e.g. state:2xNx128")
    p.add_argument("--data", default=None, help="feed the first samples of this data (as compare's --data: .npz/.npy files, an image folder with --preprocess, module:...) instead of random values")
    p.add_argument("--preprocess", default=None, help="image preprocessing for --data (as compare's)")
    p.add_argument("--json", action="store_true")
    add_runner_args(p)
    return p


def run(args: argparse.Namespace) -> int:
    from ..benchmark import BenchConfig, bench
    from ..errors import ConfigError
    from ..specs import parse_input_specs, spec_batch_axes

    try:
        sizes = tuple(int(b) for b in args.batch_sizes.split(","))
    except ValueError:
        raise ConfigError(f"--batch-sizes takes integers separated by commas, got {args.batch_sizes!r}") from None
    specs = parse_input_specs(args.inputs)
    shapes = {s.name: s.concrete_shape() for s in specs} or None
    config = BenchConfig(batch_sizes=sizes, warmup=args.warmup, iterations=args.iterations, duration=args.duration, rounds=args.rounds, shapes=shapes,
                         batch_axes=spec_batch_axes(specs), data=args.data, preprocess=args.preprocess)
    result = bench(args.models, config, backend=args.backend, options=runner_options(args))
    if args.json:
        print(json.dumps(result.to_dict(), indent=2))
    else:
        print(format_bench(result))
    return 0


def format_bench(result) -> str:
    lines = [f"backend {result.backend}, threads {result.threads or 'default'}"]
    for batch, per_model in result.results.items():
        lines.append(f"batch {batch}:")
        lines.append(f"  {'model':40} {'p50 ms':>9} {'p90 ms':>9} {'p99 ms':>9} {'mean ms':>9} {'items/s':>10} {'speedup':>8}")
        for label, s in per_model.items():
            lines.append(f"  {label[-40:]:40} {s['p50_ms']:9.3f} {s['p90_ms']:9.3f} {s['p99_ms']:9.3f} {s['mean_ms']:9.3f} {s['throughput_per_s']:10.1f} {result.ratios[batch][label]:7.2f}x")
    return "\n".join(lines)
