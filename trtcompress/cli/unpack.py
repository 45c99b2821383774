"""``trtcompress unpack ART -o MODEL``: restore the ONNX file packed by ``trtcompress pack``, byte for
byte, after checking every checksum."""
from __future__ import annotations

import argparse

from .common import Output

__all__ = ["add_parser", "run"]


def add_parser(sub) -> argparse.ArgumentParser:
    p = sub.add_parser("unpack", help="restore the ONNX model from a packed artifact", description=__doc__)
    p.add_argument("artifact", help="the file written by 'trtcompress pack'")
    p.add_argument("-o", "--output", required=True, help="where to write the ONNX file")
    return p


def run(args: argparse.Namespace) -> Output:
    from ..share.pack import unpack_file

    size = unpack_file(args.artifact, args.output)
    data = {"artifact": str(args.artifact), "onnx_bytes": size, "checksums_verified": True, "written": [str(args.output)]}
    return Output(data, f"restored {size:,} B (checksums verified); wrote {args.output}")
