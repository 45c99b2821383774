"""``trtcompress compare BASE CANDIDATE [--data DIR --preprocess ...] [--atol/--rtol/--min-cosine/--min-top1] [--json]``

Exit status: 0 when every tolerance holds, 1 when one fails, 2 on a usage or input error.
"""
from __future__ import annotations

import argparse
import json

from .common import add_data_args, add_runner_args, reader_options, runner_options


def add_verdict_args(p: argparse.ArgumentParser) -> None:
    """Thresholds of the verdict (shared by compare and compress); each output is judged by its kind."""
    t = p.add_argument_group("verdict (each output is judged by the metric of its kind, with that kind's default threshold unless given)")
    t.add_argument("--atol", type=float, default=None, help="elementwise |base - candidate| <= atol + rtol*|base| (checked only when given)")
    t.add_argument("--rtol", type=float, default=None)
    t.add_argument("--min-cosine", type=float, default=None, help="least per-sample cosine similarity, every output (embeddings/tokens: default 0.95; tokens over real tokens)")
    t.add_argument("--min-top1", type=float, default=None, help="least top-1 agreement of classification outputs (fraction; default 0.90)")
    t.add_argument("--max-rel-error", type=float, default=None, help="dense outputs: most ||candidate - base|| / ||base|| per sample (default 0.15)")
    t.add_argument("--max-changed", type=float, default=None, help="dense outputs: most fraction of elements that change (cross 0.5 in a [0, 1] map; default 0.01)")
    t.add_argument("--output-kind", action="append", default=[], metavar="NAME=KIND", help="judge output NAME as classification, embedding, tokens or dense (default: detected; repeatable)")
    t.add_argument("--no-default-thresholds", action="store_true", help="check only the thresholds given (the verdict then passes with none)")


def verdict_options(args: argparse.Namespace) -> dict:
    """CompareConfig fields from add_verdict_args' flags (None: the config's default)."""
    d = {k: getattr(args, k) for k in ("min_cosine", "min_top1", "max_rel_error", "max_changed")}
    d["output_kinds"] = tuple(x for item in args.output_kind for x in item.split(",") if x)
    d["default_thresholds"] = not args.no_default_thresholds
    return d


def add_parser(sub) -> argparse.ArgumentParser:
    p = sub.add_parser("compare", help="compare two models' outputs on the same inputs", description=__doc__)
    p.add_argument("base", help="reference ONNX model (e.g. the FP32 export)")
    p.add_argument("candidate", help="ONNX model to check against it")
    add_data_args(p, default="random:4")
    add_runner_args(p)
    add_verdict_args(p)
    p.add_argument("--outputs", default="", help="comma-separated output names to compare (default: all shared)")
    p.add_argument("--json", action="store_true", help="print the full result as JSON")
    return p


def run(args: argparse.Namespace) -> int:
    from ..comparison import CompareConfig, compare
    from ..data.base import model_inputs
    from ..data.readers import open_source

    config = CompareConfig(atol=args.atol, rtol=args.rtol, outputs=tuple(o for o in args.outputs.split(",") if o), **verdict_options(args))
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
