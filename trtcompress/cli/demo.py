"""``trtcompress demo``: the main job on a real pretrained model, offline.

EfficientNet-Lite0 (ImageNet, pretrained) is exported from torch, compressed with the default
stages, compared against FP32 on real photos (held out from calibration) and benchmarked at batch
1 and 32. The run directory is ``runs/demo`` unless ``--name`` says otherwise. The verdict is
top-1 agreement >= ``DEMO_MIN_TOP1`` on the logits, a few points under what the CPU form measures
on the held-out photos; the demo exits 1 when the compressed model falls below it.
"""
from __future__ import annotations

import argparse

from .common import Output, add_runner_args, log, runner_options
from .compress import exit_status, format_report

MODEL = "trtcompress.zoo:efficientnet_lite0"
# The demo's stages: INT8 for this CPU from one entropy calibration on the calib photos. One-shot
# 2:4 and low-rank are left out: without fine-tuning on ImageNet they break this network
# (benchmarks/RESULTS.md); --stages runs them with default options.
DEMO_STAGES: dict[str, dict] = {"quantize": {"target": "cpu", "method": "entropy"}}
# The CPU form agrees with FP32 on 84.8-85.3% of the 552 held-out views (2026-12-03, AMD EPYC
# without VNNI: int7 weights in 18 layers; benchmarks/RESULTS.md). The per-kind default (0.90) was
# set on the 16 tuning photos (94.8%), so the demo states its own floor, a few points under.
DEMO_MIN_TOP1 = 0.80


def add_parser(sub) -> argparse.ArgumentParser:
    p = sub.add_parser("demo", help="run the main job on pretrained EfficientNet-Lite0 with real photos (offline)", description=__doc__)
    p.add_argument("--name", default="demo", help="run name (default: %(default)s)")
    p.add_argument("--runs-dir", default="runs")
    p.add_argument("--overwrite", action="store_true", help="replace an earlier run of the same --name")
    p.add_argument("--stages", default=None, help="comma-separated stages with default options (default: quantize for the CPU)")
    p.add_argument("--batch-sizes", default="1,32", help="benchmark batch sizes (default: %(default)s)")
    p.add_argument("--iterations", type=int, default=40)
    add_runner_args(p)
    return p


def run(args: argparse.Namespace) -> Output:
    from ..benchmark import BenchConfig
    from ..comparison import CompareConfig
    from ..job import CompressConfig, compress, stage_config
    from ..torch_export import ExportConfig

    if args.stages is None:
        stages = tuple(stage_config(n, o) for n, o in DEMO_STAGES.items())
    else:
        stages = tuple(stage_config(n.strip()) for n in args.stages.split(",") if n.strip())
    config = CompressConfig(
        model=MODEL,
        name=args.name,
        runs_dir=args.runs_dir,
        overwrite=args.overwrite,
        stages=stages,
        export=ExportConfig(inputs=("x:1x3x224x224",)),
        data="photos:heldout",  # headline figures only on photos no choice was tuned on
        calib="photos:calib",
        preprocess="efficientnet-lite",
        batch=24,
        compare=CompareConfig(min_top1=DEMO_MIN_TOP1),
        bench=BenchConfig(batch_sizes=tuple(int(b) for b in args.batch_sizes.split(",")), iterations=args.iterations),
        backend=args.backend,
        runner=runner_options(args),
    )
    result = compress(config, log=log)
    return Output(result.report, lambda: format_report(result), exit_status(result.report))
