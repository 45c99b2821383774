"""``trtcompress`` entry point. Each verb is a module with ``add_parser(subparsers)`` and ``run(args)``.

A :class:`~trtcompress.errors.UserError` prints as one line and exits 2 (1 for a failed check such
as ``compare`` tolerances); a traceback is shown only with ``--verbose``.
"""
from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
from typing import Sequence

# verb -> module under trtcompress.cli; adding a verb is one module and one line here
VERBS = {
    "export": "export",
    "compare": "compare",
    "bench": "bench",
    "compress": "compress",
    "demo": "demo",
    "inspect": "inspect",
    "sparsify": "sparsify",
    "lowrank": "lowrank",
    "quantize": "quantize",
    "finetune": "finetune",
    "build": "build",
    "debug": "debug",
    "share": "share",
    "pack": "pack",
    "unpack": "unpack",
    "report": "report",
}


class _Parser(argparse.ArgumentParser):
    """A usage error is one line, like every other user error (the usage is in --help)."""

    def error(self, message: str):  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message}; see {self.prog} --help\n")


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The parser of every verb, or of ``only`` (each verb module imports what it needs, so
    building one parser keeps a command's start-up to its own imports)."""
    from .. import __version__

    parser = _Parser(prog="trtcompress", description="Compress models for NVIDIA inference; CPU path through ONNX Runtime.")
    parser.add_argument("--version", action="version", version=f"trtcompress {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="show tracebacks and debug logs")
    sub = parser.add_subparsers(dest="verb", metavar="VERB", required=True)
    for verb, module in VERBS.items():
        if only is not None and verb != only:
            continue
        mod = importlib.import_module(f"{__package__}.{module}")
        p = mod.add_parser(sub)
        p.add_argument("-v", "--verbose", action="store_true", default=argparse.SUPPRESS, help="show tracebacks and debug logs")
        p.set_defaults(_run=mod.run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    from ..errors import UserError

    argv = list(sys.argv[1:] if argv is None else argv)
    verb = next((a for a in argv if not a.startswith("-")), None)
    parser = build_parser(verb if verb in VERBS else None)
    args = parser.parse_args(argv)
    args.command_line = ["trtcompress", *argv]  # as typed, for reports that say how to reproduce a run
    verbose = getattr(args, "verbose", False)
    logging.basicConfig(level=logging.DEBUG if verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        return int(args._run(args) or 0)
    except UserError as e:
        if verbose:
            raise
        print(f"trtcompress {args.verb}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"trtcompress {args.verb}: interrupted; files being written were discarded: run the command again to finish", file=sys.stderr)
        return 130


def entry() -> None:
    """The console command: :func:`main`, then exit without tearing the interpreter down.

    Every file the verb wrote is closed by then; what teardown would still do is free ONNX
    Runtime's, numpy's and (for export) torch's modules one by one, 40-60 ms that a short
    command such as ``quantize`` on a small model would spend doing nothing useful.
    """
    code = main()
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # a closed pipe: nothing left to show
            pass
    os._exit(code)


if __name__ == "__main__":
    entry()
