"""``trtcompress export MODEL --input x:1x3x224x224 -o model.onnx``"""
from __future__ import annotations

import argparse
import json

from .common import add_data_args, reader_options


def add_parser(sub) -> argparse.ArgumentParser:
    p = sub.add_parser("export", help="export a torch model to ONNX and check it against torch", description=__doc__)
    p.add_argument("model", help="pkg.module:factory, path/file.py:factory, model.pt2 (ExportedProgram) or a TorchScript file")
    p.add_argument("-o", "--output", required=True, help="ONNX file to write")
    p.add_argument("--opset", type=int, default=18)
    p.add_argument("--static", action="store_true", help="fixed batch size (default: dynamic batch)")
    p.add_argument("--dynamic", action="append", default=[], metavar="NAME:AXES",
                   help="more dynamic dimensions than the batch: x:0,2,3 or x:0=batch,2=height,3=width (repeatable; a shared name is one dimension)")
    p.add_argument("--exporter", choices=("auto", "dynamo", "torchscript"), default="auto", help="auto: dynamo, falling back to TorchScript")
    p.add_argument("--external-data", action="store_true", default=None, help="always write weights to a .data file (default: only over 2 GB)")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    add_data_args(p, default=None)
    return p


def run(args: argparse.Namespace) -> int:
    from ..data.readers import open_source
    from ..errors import ConfigError
    from ..torch_export import ExportConfig, export

    if not args.inputs:
        raise ConfigError("give the model's inputs, e.g. --input x:1x3x224x224 (one per forward() argument, in order)")
    config = ExportConfig(inputs=tuple(args.inputs), opset=args.opset, dynamic_batch=not args.static, dynamic=tuple(args.dynamic), exporter=args.exporter, seed=args.seed, external_data=args.external_data)
    data = (lambda inputs: open_source(args.data, inputs, reader_options(args))) if args.data else None
    result = export(args.model, args.output, config, data)
    if args.json:
        print(json.dumps(result.to_dict(), indent=2))
        return 0
    note = f" (fallback: {result.fallback_reason})" if result.fallback_reason else ""
    print(f"wrote {result.path} with the {result.exporter} exporter{note}")
    for kind, c in result.check.items():
        print(f"  check on {kind} inputs ({c['batches']} batches): max abs error {c['max_abs']:.3g}, max rel error {c['max_rel']:.3g}")
    return 0
