"""``trtcompress inspect MODEL``: per layer, the weight shape, sparsity, whether it follows 2:4 and
whether TensorRT could run it with sparse kernels. Works on float and Q/DQ models."""
from __future__ import annotations

import argparse

from ..model_io import load_model
from ..sparsity.inspect import inspect_layers, summarize
from .common import Output

__all__ = ["add_parser", "run"]


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = sub.add_parser("inspect", help="per-layer weights: 2:4 pattern, sparsity, TensorRT sparse eligibility")
    p.add_argument("model", help="ONNX file")
    p.add_argument("--all", action="store_true", help="also list layers without constant weights")
    return p


def _yn(b: bool) -> str:
    return "yes" if b else "no"


def run(args: argparse.Namespace) -> Output:
    model = load_model(args.model)
    layers = inspect_layers(model)
    summary = summarize(layers)
    return Output({"model": str(args.model), "summary": summary, "layers": [l.to_dict() for l in layers]}, lambda: _table(layers, summary, args.all))


def _table(layers, summary: dict, all_layers: bool) -> None:
    shown = layers if all_layers else [l for l in layers if l.shape is not None]
    header = ("layer", "op", "weight shape", "params", "dtype", "sparsity", "2:4", "TRT sparse", "note")
    rows = []
    for l in shown:
        shape = "x".join(map(str, l.shape)) if l.shape else "-"
        dtype = (l.dtype or "-") + (" (q)" if l.quantized else "")
        note = "; ".join(x for x in (f"in {l.scope}" if l.scope else "", l.reason or "") if x)
        rows.append((l.layer, l.op, shape, str(l.params), dtype, f"{100 * l.sparsity:.1f}%", _yn(l.follows_2to4), _yn(l.trt_eligible), note))
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(header)]
    widths[-1] = 0
    print("  ".join(h.ljust(w) for h, w in zip(header, widths)).rstrip())
    for r in rows:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip())
    print(
        f"\n{summary['layers_with_constant_weights']} layers with constant weights, {summary['layers_2to4']} follow 2:4, "
        f"{summary['layers_trt_eligible']} TensorRT-eligible, {summary['layers_sparse_ready']} ready for sparse kernels; "
        f"{100 * summary['sparsity']:.1f}% of {summary['params']} weights are zero"
    )
