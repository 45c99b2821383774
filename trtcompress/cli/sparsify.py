"""``trtcompress sparsify MODEL -o OUT``: 2:4 pruning of an ONNX model (optionally with channel
permutation), with a per-layer report."""
from __future__ import annotations

import argparse

from ..stages.sparsify import SparsifyConfig, sparsify
from .common import add_config_args, add_stage_verb_args, run_stage_verb

__all__ = ["add_parser", "run"]


HELP = {
    "permute": "search input-channel permutations that keep more weight magnitude",
    "include": "prune only layers whose node/output/weight name matches",
    "exclude": "leave matching layers dense",
    "op_types": "op types to prune",
    "min_channels": "leave layers with fewer input or output channels dense",
    "permute_rounds": "rounds of the permutation search per layer",
    "seed": "seed of the permutation search",
}


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = sub.add_parser("sparsify", help="prune Conv/Gemm/MatMul weights to 2:4 structured sparsity")
    add_stage_verb_args(p, "pruned")
    add_config_args(p, SparsifyConfig, help=HELP, split=("op_types",), metavars={"include": "PATTERN", "exclude": "PATTERN", "op_types": "OPS"})
    return p


def run(args: argparse.Namespace) -> int:
    return run_stage_verb(args, sparsify, SparsifyConfig, _summary)


def _summary(report: dict, config: SparsifyConfig) -> None:
    print(
        f"pruned {report['layers_pruned']} layers to 2:4 ({report['zeros_added']} weights zeroed, "
        f"{100 * report['pruning_rate']:.1f}% of compute-layer weights); {report['layers_dense']} left dense"
    )
    print(f"retained magnitude (mean over pruned layers): {report['mean_retained_magnitude']:.4f}", end="")
    if config.permute:
        print(f", with permutation {report['mean_retained_magnitude_permuted']:.4f} ({report['layers_permuted']} layers permuted)")
    else:
        print()
    reasons: dict[str, int] = {}
    for s in report["skipped"]:
        key = s["reason"].split(" (group=")[0] + (" convolution" if "(group=" in s["reason"] else "")
        reasons[key] = reasons.get(key, 0) + 1
    for reason, n in sorted(reasons.items(), key=lambda kv: -kv[1]):
        print(f"  dense x{n}: {reason}")
    if "warning" in report:
        print(f"warning: {report['warning']}")
