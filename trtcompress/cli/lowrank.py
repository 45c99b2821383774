"""``trtcompress lowrank MODEL -o OUT [--rule energy|error|flops]``: truncated-SVD factorisation of
Conv/Gemm/MatMul weights, ranks chosen per layer, with a per-layer report."""
from __future__ import annotations

import argparse
import json

from .common import add_config_args, add_normalize_arg, config_from_args, normalize_line, run_normalized


HELP = {
    "rule": "rank rule",
    "energy": "energy rule: fraction of squared singular values kept",
    "error": "error rule: relative output error allowed per layer on --data",
    "flop_fraction": "flops rule: FLOPs kept of the factorised layers",
    "allocation": "flops rule: how the FLOP budget is shared between layers",
    "ops": "op types to factorise",
    "exclude": "leave matching layers dense (layer name or fnmatch pattern)",
    "min_flop_saving": "leave a layer dense unless its rank cuts its FLOPs by at least this fraction",
    "min_rank": "smallest rank kept",
    "rank_multiple": "round ranks up to a multiple (8 suits tensor cores)",
    "svd": "SVD method",
    "randomized_min_dim": "use the randomized SVD from this matrix dimension up (svd auto)",
    "oversample": "randomized SVD oversampling",
    "power_iters": "randomized SVD power iterations",
    "seed": "seed of the randomized SVD and of random calibration data",
    "calib": "error rule: calibration data (random[:N], a directory of .npz/.npy files, or an image folder)",
    "preprocess": "image preprocessing of --data: a preset (imagenet, efficientnet-lite, mnist) and/or key=value,...",
    "limit": "error rule: calibration samples used",
    "batch": "error rule: samples per inference",
    "inputs": "shape of a dynamic input of the calibration data, e.g. x:1x3x224x224 (NAME:DIMS[:DTYPE])",
}


def add_parser(sub) -> argparse.ArgumentParser:
    from ..lowrank import RANK_RULES, LowRankConfig
    from ..lowrank.config import ALLOCATIONS
    from ..lowrank.svd import SVD_METHODS

    p = sub.add_parser("lowrank", help="factorise large layers into two low-rank layers", description=__doc__)
    p.add_argument("model", help="ONNX file")
    p.add_argument("-o", "--output", required=True, help="where to write the factorised ONNX file")
    add_config_args(p, LowRankConfig, help=HELP, flags={"calib": "--data", "inputs": "--input"}, split=("ops",),
                    choices={"rule": RANK_RULES, "allocation": ALLOCATIONS, "svd": SVD_METHODS},
                    metavars={"calib": "DATA", "inputs": "NAME:DIMS[:DTYPE]", "exclude": "PATTERN"})
    p.add_argument("--report", default=None, metavar="JSON", help="write the full report to this file")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    add_normalize_arg(p)
    return p


def run(args: argparse.Namespace) -> int:
    from ..fileio import write_json
    from ..lowrank import LowRankConfig
    from ..model_io import load_model, save_model
    from ..stages.lowrank import lowrank

    config = config_from_args(args, LowRankConfig)
    result = run_normalized(lowrank, load_model(args.model), config, args)
    save_model(result.model, args.output)
    r = result.report
    if args.report:
        write_json(args.report, r)
    if args.json:
        print(json.dumps(r, indent=2, default=str))
        return 0
    if normalize_line(r):
        print(normalize_line(r))
    print(f"factorised {r['factorised']} layers ({len(r['skipped'])} left dense) with rule {r['rule']}")
    print(f"parameters {r['params_before']:,} -> {r['params_after']:,}; FLOPs per sample {r['flops_before']:,} -> {r['flops_after']:,} ({r['flop_reduction']:.2f}x fewer)")
    print(f"wrote {args.output}")
    return 0
