"""``trtcompress debug FP32.onnx QDQ.onnx --data DATA [-o fixed.onnx]``

Names the smallest set of quantized layers whose Q/DQ makes the model diverge from FP32, by
bisection over the layers (each candidate runs through the runner: ONNX Runtime here, TensorRT with
--backend trt). TensorRT 11 has no per-layer precision control, so this edits the ONNX instead.
``-o`` writes the Q/DQ model with those layers float.
"""
from __future__ import annotations

import argparse

from .common import Output, add_data_args, add_runner_args, data_options, log, runner_options


def add_parser(sub) -> argparse.ArgumentParser:
    p = sub.add_parser("debug", help="find the quantized layers that make a Q/DQ model diverge from FP32", description=__doc__)
    p.add_argument("fp32", help="the FP32 ONNX model")
    p.add_argument("qdq", help="its Q/DQ (quantized) form")
    p.add_argument("-o", "--output", default=None, help="write the Q/DQ model with the layers found left float")
    p.add_argument("--metric", choices=("cosine", "top1"), default="cosine", help="worst output's mean cosine to FP32, or top-1 agreement (default: %(default)s)")
    p.add_argument("--threshold", type=float, default=0.99, help="the model diverges below this (default: %(default)s)")
    p.add_argument("--max-runs", type=int, default=200, help="at most this many model runs")
    add_data_args(p, default="random:8")
    add_runner_args(p)
    return p


def run(args: argparse.Namespace) -> Output:
    from ..data.base import model_inputs
    from ..data.options import open_data
    from ..model_io import load_model, save_model
    from ..quant.bisect import DebugConfig, find_divergent_layers, make_float

    config = DebugConfig(metric=args.metric, threshold=args.threshold, backend=args.backend, runner=runner_options(args), max_runs=args.max_runs)
    feeds = list(open_data(args.data, model_inputs(args.fp32), data_options(args)))
    result = find_divergent_layers(args.fp32, args.qdq, feeds, config, log=log)
    written = bool(args.output and result.layers)
    if written:
        save_model(make_float(load_model(args.qdq), [f.node for f in result.layers], load_model(args.fp32)), args.output)
    return Output({**result.to_dict(), "written": [str(args.output)] if written else []}, lambda: _show(result, args.output if written else None))


def _show(result, written: str | None) -> None:
    m = result.metric
    if not result.diverges:
        print(f"no divergence: {m} {result.metric_quantized:.6f} >= {result.threshold} over {result.quantized_layers} quantized layers ({result.runs} run)")
        return
    print(f"Q/DQ model: {m} {result.metric_quantized:.6f} < {result.threshold}; every layer float: {result.metric_all_float:.6f}")
    print(f"{len(result.layers)} layer(s) cause it, found in {result.runs} runs over {result.quantized_layers} quantized layers:")
    for f in result.layers:
        print(f"  {f.node} ({f.op}): {m} {f.metric_alone_float:.6f} with only this layer float")
    print(f"with all of them float: {m} {result.metric_fixed:.6f}")
    if written:
        print(f"wrote {written}")
