"""``trtcompress bench MODEL [MODEL...] [--batch-sizes 1,32] [--iterations N | --duration S]``

Models are measured in interleaved rounds in one run; ratios are against the first model.
"""
from __future__ import annotations

import argparse

from .common import Output, add_config_args, add_runner_args, config_from_args, runner_options


HELP = {
    "batch_sizes": "batch sizes",
    "warmup": "untimed runs at the start of every turn (each turn starts a fresh session)",
    "iterations": "timed runs per model and batch size",
    "duration": "seconds per model and batch size instead of --iterations",
    "rounds": "interleaved rounds",
    "seed": "seed of the random inputs",
    "data": "feed the first samples of this data (as compare's --data: .npz/.npy files, an image folder with --preprocess, module:...) instead of random values",
    "preprocess": "image preprocessing for --data (as compare's)",
    "cuda_graph": "TensorRT: time a CUDA graph replay of one inference (GPU time)",
    "inputs": "shape for dynamic non-batch dims, e.g. ids:1x128:int64; a named dimension marks the batch axis, e.g. state:2xNx128",
    "budget": "seconds per batch size for every model's runs, warm-up included: a slow model gets fewer iterations (at least one per round)",
}


def add_parser(sub) -> argparse.ArgumentParser:
    from ..benchmark import BenchConfig

    p = sub.add_parser("bench", help="measure latency percentiles and throughput; ratios between models", description=__doc__)
    p.add_argument("models", nargs="+", help="ONNX models or TensorRT engines (.engine: run on TensorRT); the first is the baseline")
    add_config_args(p, BenchConfig, help=HELP, flags={"inputs": "--input"}, split=("batch_sizes",), metavars={"batch_sizes": "N,N", "inputs": "NAME:DIMS[:DTYPE]"})
    add_runner_args(p)
    return p


def run(args: argparse.Namespace) -> Output:
    from ..benchmark import BenchConfig, bench

    config = config_from_args(args, BenchConfig)
    result = bench(args.models, config, backend=args.backend, options=runner_options(args))
    return Output(result.to_dict(), lambda: format_bench(result))


def format_bench(result) -> str:
    lines = [f"backend {result.backend}, threads {result.threads or 'default'}"]
    for batch, per_model in result.results.items():
        lines.append(f"batch {batch}:")
        lines.append(f"  {'model':40} {'p50 ms':>9} {'p90 ms':>9} {'p99 ms':>9} {'mean ms':>9} {'items/s':>10} {'speedup':>8}")
        for label, s in per_model.items():
            lines.append(f"  {label[-40:]:40} {s['p50_ms']:9.3f} {s['p90_ms']:9.3f} {s['p99_ms']:9.3f} {s['mean_ms']:9.3f} {s['throughput_per_s']:10.1f} {result.ratios[batch][label]:7.2f}x")
            if "gpu" in s:
                g = s["gpu"]
                lines.append(f"  {'  GPU compute' + (' (CUDA graph)' if g.get('cuda_graph') else ''):40} {g['p50_ms']:9.3f} {g['p90_ms']:9.3f} {g['p99_ms']:9.3f} {g['mean_ms']:9.3f} {g['throughput_per_s']:10.1f}   GPU memory {g.get('gpu_memory_used_bytes', 0) / 2**20:.0f} MiB")
    return "\n".join(lines)
