"""``trtcompress compare BASE CANDIDATE [--data DIR --preprocess ...] [--atol/--rtol/--min-cosine/--min-top1] [--json]``

Exit status: 0 when every tolerance holds, 1 when one fails, 2 on a usage or input error.
"""
from __future__ import annotations

import argparse
import json

from .common import add_config_args, add_data_args, add_runner_args, config_from_args, reader_options, runner_options


COMPARE_HELP = {
    "atol": "elementwise |base - candidate| <= atol + rtol*|base|",
    "rtol": "relative part of that bound",
    "min_cosine": "least per-sample cosine similarity",
    "min_top1": "least top-1 agreement for classifier outputs (fraction)",
    "outputs": "output names to compare (all shared outputs when none)",
}


def add_parser(sub) -> argparse.ArgumentParser:
    from ..comparison import CompareConfig

    p = sub.add_parser("compare", help="compare two models' outputs on the same inputs", description=__doc__)
    p.add_argument("base", help="reference ONNX model (e.g. the FP32 export)")
    p.add_argument("candidate", help="ONNX model, or a TensorRT engine (then run on TensorRT, the base on ONNX Runtime)")
    add_data_args(p, default="random:4")
    add_runner_args(p)
    t = p.add_argument_group("tolerances (a check runs only when given)")
    add_config_args(t, CompareConfig, help=COMPARE_HELP, metavars={"outputs": "NAME"})
    p.add_argument("--json", action="store_true", help="print the full result as JSON")
    return p


def run(args: argparse.Namespace) -> int:
    from ..comparison import CompareConfig, compare
    from ..data.base import model_inputs
    from ..data.readers import open_source

    config = config_from_args(args, CompareConfig)
    source = open_source(args.data, model_inputs(args.base), reader_options(args))
    result = compare(args.base, args.candidate, source, config, backend=args.backend, options=runner_options(args))
    if args.json:
        print(json.dumps(result.to_dict(), indent=2))
    else:
        print(format_compare(result))
    return 0 if result.passed else 1


def format_compare(result) -> str:
    lines = [f"compared {result.candidate} against {result.base} on {result.samples} samples ({result.feeds} feeds)"]
    for name, o in result.outputs.items():
        extra = f", top-1 agreement {o['top1_agreement']:.2%}" if o["top1_agreement"] is not None else ""
        lines.append(
            f"  {name}: abs err max {o['max_abs']:.3g} mean {o['mean_abs']:.3g} median {o['median_abs']:.3g}; "
            f"rel err max {o['max_rel']:.3g} mean {o['mean_rel']:.3g}; cosine mean {o['cosine_mean']:.6f} min {o['cosine_min']:.6f}{extra}"
        )
    lines.append("PASSED" if result.passed else "FAILED: " + "; ".join(result.failures))
    return "\n".join(lines)
