"""``trtcompress compare BASE CANDIDATE [--data DIR --preprocess ...] [--atol/--rtol/--min-cosine/--min-top1] [--json]``

Exit status: 0 when every tolerance holds, 1 when one fails, 2 on a usage or input error.
"""
from __future__ import annotations

import argparse

from .common import Output, add_config_args, add_data_args, add_runner_args, config_from_args, data_options, runner_options


COMPARE_HELP = {
    "atol": "elementwise |base - candidate| <= atol + rtol*|base| (checked only when given)",
    "rtol": "relative part of that bound",
    "min_cosine": "least per-sample cosine similarity, every output (embeddings/tokens: default 0.95; tokens over real tokens)",
    "min_top1": "least top-1 agreement of classification outputs (fraction; default 0.90)",
    "max_rel_error": "dense outputs: most ||candidate - base|| / ||base|| per sample (default 0.15)",
    "max_changed": "dense outputs: most fraction of elements that change (cross 0.5 in a [0, 1] map; default 0.01)",
    "default_thresholds": "judge each output by its kind's default threshold where none is given (--no-default-thresholds: only what is given)",
    "output_kinds": "judge output NAME as classification, embedding, tokens or dense (default: detected)",
    "outputs": "output names to compare (all shared outputs when none)",
}


def add_verdict_args(p: argparse.ArgumentParser) -> None:
    """The verdict's thresholds, CompareConfig's fields (shared by compare and compress)."""
    from ..comparison import CompareConfig

    t = p.add_argument_group("verdict (each output is judged by the metric of its kind, with that kind's default threshold unless given)")
    add_config_args(t, CompareConfig, help=COMPARE_HELP, flags={"output_kinds": "--output-kind"}, metavars={"outputs": "NAME", "output_kinds": "NAME=KIND"})


def add_parser(sub) -> argparse.ArgumentParser:
    p = sub.add_parser("compare", help="compare two models' outputs on the same inputs", description=__doc__)
    p.add_argument("base", help="reference ONNX model (e.g. the FP32 export)")
    p.add_argument("candidate", help="ONNX model, or a TensorRT engine (then run on TensorRT, the base on ONNX Runtime)")
    add_data_args(p, default="random:4")
    add_runner_args(p)
    add_verdict_args(p)
    return p


def run(args: argparse.Namespace) -> Output:
    from ..comparison import CompareConfig, compare
    from ..data.base import model_inputs
    from ..data.options import open_data

    config = config_from_args(args, CompareConfig)
    source = open_data(args.data, model_inputs(args.base), data_options(args))
    result = compare(args.base, args.candidate, source, config, backend=args.backend, options=runner_options(args))
    return Output(result.to_dict(), lambda: format_compare(result), 0 if result.passed else 1)


def format_compare(result) -> str:
    lines = [f"compared {result.candidate} against {result.base} on {result.samples} samples ({result.feeds} feeds)"]
    for name, o in result.outputs.items():
        lines.append(
            f"  {name} ({o['kind']}): abs err max {o['max_abs']:.3g} mean {o['mean_abs']:.3g} median {o['median_abs']:.3g}; "
            f"cosine mean {o['cosine_mean']:.6f} min {o['cosine_min']:.6f}{kind_metrics(o)}"
        )
    lines.append(verdict_lines(result.failures))
    return "\n".join(lines)


def kind_metrics(o: dict) -> str:
    """The metric an output's kind is judged by, for a summary line."""
    if o.get("top1_agreement") is not None:
        return f", top-1 agreement {o['top1_agreement']:.2%}"
    if o.get("rel_error_max") is not None:
        return f", relative error max {o['rel_error_max']:.4f} mean {o['rel_error_mean']:.4f}, changed {o['changed_fraction']:.2%} ({o['changed_rule']})"
    return ""


def verdict_lines(failures: list[str]) -> str:
    """PASSED, or FAILED with one line per failing output check."""
    return "PASSED" if not failures else "\n".join(["FAILED:"] + [f"  {f}" for f in failures])
