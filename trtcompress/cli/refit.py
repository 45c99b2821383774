"""``trtcompress refit ENGINE ARTIFACT_OR_ONNX -o OUT``: fill a weight-stripped engine (built with
``trtcompress build --strip-weights``, TensorRT >= 10) with the weights of a ``trtcompress pack``
artifact or an ONNX file, on the device, and write the runnable engine. The artifact is checked
against the weights the engine was built from before TensorRT is called."""
from __future__ import annotations

import argparse

from .common import Output

__all__ = ["add_parser", "run"]


def add_parser(sub) -> argparse.ArgumentParser:
    p = sub.add_parser("refit", help="refit a weight-stripped TensorRT engine from a packed artifact (TensorRT >= 10)", description=__doc__)
    p.add_argument("engine", help="the stripped engine (its .json sidecar beside it)")
    p.add_argument("source", help="the artifact from 'trtcompress pack', or the ONNX file")
    p.add_argument("-o", "--output", required=True, help="where to write the refitted engine (and its .json sidecar)")
    return p


def run(args: argparse.Namespace) -> Output:
    from ..trt.refit import refit_engine

    r = refit_engine(args.engine, args.source, args.output)
    data = {**r.to_dict(), "written": [str(r.output_path), str(r.sidecar_path)]}
    s = r.sizes
    text = (f"refitted {r.weights_refitted} weights of {r.engine_path} ({s['stripped_engine_bytes']:,} B) from the {r.source_kind} {r.source_path} "
            f"({s['source_bytes']:,} B) with TensorRT {r.tensorrt_version} in {r.seconds:.1f} s\n"
            f"shipped {s['source_bytes']:,} B instead of the {s['refitted_engine_bytes']:,} B engine ({s['refitted_engine_bytes'] / max(s['source_bytes'], 1):.1f}x less)\n"
            f"wrote {r.output_path} and {r.sidecar_path}")
    return Output(data, text)
