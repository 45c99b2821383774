"""``trtcompress pack MODEL -o ART``: a compact artifact to ship an ONNX model (entropy-coded uint8
indices, LZMA-coded rest, manifest with SHA-256 checksums); ``trtcompress unpack`` restores it bit-exactly."""
from __future__ import annotations

import argparse

from .common import Output

__all__ = ["add_parser", "run"]


def add_parser(sub) -> argparse.ArgumentParser:
    p = sub.add_parser("pack", help="pack an ONNX model (e.g. from 'share') into a compact artifact", description=__doc__)
    p.add_argument("model", help="ONNX file (single file, no external data)")
    p.add_argument("-o", "--output", required=True, help="where to write the artifact")
    p.add_argument("--reference", default=None, metavar="ONNX", help="the FP32 ONNX to state the shipped ratio against")
    return p


def run(args: argparse.Namespace) -> Output:
    from ..model_io import require_model_file
    from ..share.pack import pack_file

    r = pack_file(args.model, args.output)
    if args.reference:
        r["reference_bytes"] = require_model_file(args.reference).stat().st_size
        r["ratio_vs_reference"] = r["reference_bytes"] / r["artifact_bytes"]
    return Output({**r, "written": [str(args.output)]}, lambda: _summary(r, args))


def _summary(r: dict, args: argparse.Namespace) -> None:
    print(f"packed {r['onnx_bytes']:,} B of ONNX into {r['artifact_bytes']:,} B ({r['ratio_vs_onnx']:.2f}x): "
          f"{r['index_tensors']} index tensors {r['index_bytes_raw']:,} -> {r['index_bytes_stored']:,} B, rest {r['rest_bytes_raw']:,} -> {r['rest_bytes_stored']:,} B")
    if args.reference:
        print(f"shipped size vs the FP32 ONNX {args.reference}: {r['reference_bytes']:,} B -> {r['artifact_bytes']:,} B ({r['ratio_vs_reference']:.1f}x smaller)")
    print(f"wrote {args.output}")
