"""``trtcompress lowrank MODEL -o OUT [--rule energy|error|flops]``: truncated-SVD factorisation of
Conv/Gemm/MatMul weights, ranks chosen per layer, with a per-layer report."""
from __future__ import annotations

import argparse

from .common import CALIB_DATA_FLAGS, CALIB_DATA_HELP, CALIB_DATA_METAVARS, add_config_args, add_stage_verb_args, run_stage_verb


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
    **CALIB_DATA_HELP,
}


def add_parser(sub) -> argparse.ArgumentParser:
    from ..lowrank import RANK_RULES, LowRankConfig
    from ..lowrank.config import ALLOCATIONS
    from ..lowrank.svd import SVD_METHODS

    p = sub.add_parser("lowrank", help="factorise large layers into two low-rank layers", description=__doc__)
    add_stage_verb_args(p, "factorised")
    add_config_args(p, LowRankConfig, help=HELP, flags=CALIB_DATA_FLAGS, split=("ops",),
                    choices={"rule": RANK_RULES, "allocation": ALLOCATIONS, "svd": SVD_METHODS},
                    metavars={**CALIB_DATA_METAVARS, "exclude": "PATTERN"})
    return p


def run(args: argparse.Namespace) -> int:
    from ..lowrank import LowRankConfig
    from ..stages.lowrank import lowrank

    return run_stage_verb(args, lowrank, LowRankConfig, _summary)


def _summary(r: dict, config) -> None:
    print(f"factorised {r['factorised']} layers ({len(r['skipped'])} left dense) with rule {r['rule']}")
    print(f"parameters {r['params_before']:,} -> {r['params_after']:,}; FLOPs per sample {r['flops_before']:,} -> {r['flops_after']:,} ({r['flop_reduction']:.2f}x fewer)")
