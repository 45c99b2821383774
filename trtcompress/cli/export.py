"""``trtcompress export MODEL --input x:1x3x224x224 -o model.onnx``"""
from __future__ import annotations

import argparse

from .common import Output, add_config_args, add_data_args, config_from_args, data_options


HELP = {
    "opset": "ONNX opset",
    "dynamic_batch": "dynamic batch dimension (--static: a fixed batch size)",
    "exporter": "auto: dynamo, falling back to TorchScript",
    "check_batches": "random batches the export is checked on against torch",
    "dynamic": "more dynamic dimensions than the batch: x:0,2,3 or x:0=batch,2=height,3=width (a shared name is one dimension)",
    "external_data": "write weights to a .data file (none: only over 2 GB)",
}


def add_parser(sub) -> argparse.ArgumentParser:
    from ..torch_export.config import EXPORTERS, ExportConfig

    p = sub.add_parser("export", help="export a torch model to ONNX and check it against torch", description=__doc__)
    p.add_argument("model", help="pkg.module:factory, path/file.py:factory, model.pt2 (ExportedProgram) or a TorchScript file")
    p.add_argument("-o", "--output", required=True, help="ONNX file to write")
    add_config_args(p, ExportConfig, skip=("inputs", "seed"), help=HELP, split=(), metavars={"dynamic": "NAME:AXES"}, choices={"exporter": EXPORTERS})
    p.add_argument("--target-trt", default=None, metavar="VERSION", help="export at an opset this TensorRT parses (17 for 8.6)")
    p.add_argument("--static", dest="dynamic_batch", action="store_false", default=None, help="same as --no-dynamic-batch")
    add_data_args(p, default=None)
    return p


def run(args: argparse.Namespace) -> Output:
    from ..data.options import open_data
    from ..errors import ConfigError
    from ..torch_export import ExportConfig, export

    if not args.inputs:
        raise ConfigError("give the model's inputs, e.g. --input x:1x3x224x224 (one per forward() argument, in order)")
    config = config_from_args(args, ExportConfig, inputs=tuple(args.inputs), seed=args.seed)
    if args.target_trt:
        from ..trt.opset import export_opset

        config = config.replace(opset=export_opset(args.opset, config.opset, args.target_trt))
    data = None
    if args.data:
        options = data_options(args)
        data = lambda inputs: open_data(args.data, inputs, options)  # noqa: E731
    result = export(args.model, args.output, config, data)
    return Output(result.to_dict(), lambda: _summary(result))


def _summary(result) -> str:
    note = f" (fallback: {result.fallback_reason})" if result.fallback_reason else ""
    lines = [f"wrote {result.path} with the {result.exporter} exporter{note}"]
    for kind, c in result.check.items():
        lines.append(f"  check on {kind} inputs ({c['batches']} batches): max abs error {c['max_abs']:.3g}, max rel error {c['max_rel']:.3g}")
    return "\n".join(lines)
