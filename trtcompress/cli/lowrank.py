"""``trtcompress lowrank MODEL -o OUT [--rule energy|error|flops]``: truncated-SVD factorisation of
Conv/Gemm/MatMul weights, ranks chosen per layer, with a per-layer report."""
from __future__ import annotations

import argparse
import json

from .common import add_data_args, add_normalize_arg, normalize_line, reader_options, run_normalized


def add_parser(sub) -> argparse.ArgumentParser:
    from ..lowrank import LowRankConfig

    d = LowRankConfig()
    p = sub.add_parser("lowrank", help="factorise large layers into two low-rank layers", description=__doc__)
    p.add_argument("model", help="ONNX file")
    p.add_argument("-o", "--output", required=True, help="where to write the factorised ONNX file")
    p.add_argument("--rule", choices=("energy", "error", "flops"), default=d.rule, help="rank rule (default: %(default)s)")
    p.add_argument("--energy", type=float, default=d.energy, help="energy rule: fraction of squared singular values kept (default: %(default)s)")
    p.add_argument("--error", type=float, default=d.error, help="error rule: relative output error allowed per layer on --data (default: %(default)s)")
    p.add_argument("--flop-fraction", type=float, default=d.flop_fraction, help="flops rule: FLOPs kept of the factorised layers (default: %(default)s)")
    p.add_argument("--exclude", action="append", default=[], metavar="PATTERN", help="leave matching layers dense (repeatable)")
    p.add_argument("--rank-multiple", type=int, default=d.rank_multiple, help="round ranks up to a multiple (8 suits tensor cores)")
    p.add_argument("--report", default=None, metavar="JSON", help="write the full report to this file")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    add_data_args(p, default=None)
    add_normalize_arg(p)
    return p


def run(args: argparse.Namespace) -> int:
    from ..fileio import write_json
    from ..lowrank import LowRankConfig
    from ..model_io import load_model, save_model
    from ..stages.lowrank import lowrank

    opts = reader_options(args)
    config = LowRankConfig(
        rule=args.rule, energy=args.energy, error=args.error, flop_fraction=args.flop_fraction,
        exclude=tuple(args.exclude), rank_multiple=args.rank_multiple,
        calib=args.data, preprocess=args.preprocess, limit=args.limit or LowRankConfig().limit, batch=opts.batch_size or LowRankConfig().batch,
    )
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
