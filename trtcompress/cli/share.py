"""``trtcompress share MODEL -o OUT [--bits 4]``: k-means weight sharing of Conv/Gemm/MatMul weights
(uint8 indices + codebooks in standard ONNX), with the per-layer error and the shipped size."""
from __future__ import annotations

import argparse

from .common import CALIB_DATA_FLAGS, CALIB_DATA_HELP, CALIB_DATA_METAVARS, add_config_args, add_stage_verb_args, run_stage_verb

__all__ = ["add_parser", "run"]

HELP = {
    "bits": "shared values per layer as bits (2**bits clusters)",
    "clusters": "shared values per layer (overrides --bits; at most 256)",
    "layer_bits": "bits of the layers matching PATTERN, e.g. Gemm=5 (first match wins)",
    "init": "k-means initialisation (Deep Compression compares the three; linear keeps large weights)",
    "granularity": "one codebook per layer or per output channel",
    "include": "share only layers whose node/output/weight name or op type matches",
    "exclude": "leave matching layers float",
    "op_types": "op types to share",
    "min_size": "leave weights with fewer elements float",
    "prune": "first zero this fraction of each layer's smallest weights (unstructured, no fine-tuning)",
    "keep_zeros": "keep exact zeros as their own centroid, so pruning survives",
    "iters": "k-means iterations at most (0: the initial centroids, as TF-MOT has them before fine-tuning)",
    "seed": "seed of the kmeans++ initialisation",
    "int8_grid": "shared values on each output channel's INT8 grid (integer levels x the channel's scale): a later quantize keeps exactly them as int8 weights",
    "rule": "how each layer's count is chosen: bits (fixed), error (fewest bits within --error on --calib), size (--mean-bits budget spent where it removes most error)",
    "error": "rule error: relative output error allowed per layer on the calibration data",
    "mean_bits": "rule size: bits per shared weight, codebooks included",
    "min_bits": "rules error and size: fewest bits a layer gets",
    "sensitivity": "rules error and size: measure a layer's error at its own output (layer) or at the model's outputs with only that layer shared (model: end to end, one model run per batch per layer and bit count)",
    "threads": "ONNX Runtime intra-op threads of the model-level probes (0: its choice)",
    **CALIB_DATA_HELP,
}


def add_parser(sub) -> argparse.ArgumentParser:
    from ..share import GRANULARITIES, INITS, SENSITIVITIES, SHARE_OPS, SHARE_RULES, ShareConfig

    p = sub.add_parser("share", help="k-means weight sharing (uint8 indices + codebooks)", description=__doc__)
    add_stage_verb_args(p, "shared")
    add_config_args(p, ShareConfig, help=HELP, split=("op_types",), flags=CALIB_DATA_FLAGS,
                    choices={"init": tuple(INITS), "granularity": GRANULARITIES, "op_types": SHARE_OPS, "rule": SHARE_RULES, "sensitivity": SENSITIVITIES},
                    metavars={"include": "PATTERN", "exclude": "PATTERN", "layer_bits": "PATTERN=BITS", "op_types": "OPS", **CALIB_DATA_METAVARS})
    return p


def run(args: argparse.Namespace) -> int:
    from ..share import ShareConfig
    from ..stages.share import share

    return run_stage_verb(args, share, ShareConfig, _summary)


def _summary(r: dict, config) -> None:
    if r["rule"] != "bits":
        print(f"rule {r['rule']}: error measured on {r['error_measured_on']}")
    print(f"shared {r['layers_shared']} layers ({r['weights_shared']:,} weights, {r['mean_bits']:.2f} bits each, {r['granularity']} codebooks); {len(r['skipped'])} left float")
    for l in r["layers"]:
        print(f"  {l['layer']}: {l['clusters']} clusters, relative error {l['rel_error']:.4f} (clustering alone {l['share_rel_error']:.4f}), zeros {l['zeros']:.1%}"
              + (f", output error {l['output_rel_error']:.4f}" if "output_rel_error" in l else ""))
    s = r["sizes"]
    print(f"size: FP32 ONNX {s['onnx_bytes_before']:,} B -> shared ONNX {s['onnx_bytes_after']:,} B ({s['ratio_onnx']:.1f}x) -> packed {s['packed_bytes']:,} B ({s['ratio_packed']:.1f}x, what 'trtcompress pack' ships)")
    for note in r.get("notes", []):
        print(f"note: {note}")
