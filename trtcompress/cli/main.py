"""``trtcompress`` entry point. Each verb is a module with ``add_parser(subparsers)`` and ``run(args)``.

``run`` returns an :class:`~trtcompress.cli.common.Output`: the verb's results as data, its human
summary and its exit status; printing is done here, once for every verb. The global flags:

- ``--json``: stdout holds exactly one JSON document, the results (or, on an error, an object with
  ``error``); anything the verb or a library would print to stdout goes to stderr instead.
- ``--quiet``: nothing on stdout or stderr but errors (progress, logs, warnings and the summary
  are dropped); exit statuses are unchanged. With ``--json``, the document is still printed.

A :class:`~trtcompress.errors.UserError` (or a usage error) prints as one line on stderr and exits
2 (1 for a failed check such as ``compare`` tolerances); a traceback is shown only with ``--verbose``.
"""
from __future__ import annotations

import argparse
import contextlib
import importlib
import json
import logging
import os
import sys
from typing import Any, Iterator, Sequence

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
    "refit": "refit",
    "report": "report",
    "sweep": "sweep",
}


class _UsageError(Exception):
    pass


class _Parser(argparse.ArgumentParser):
    """A usage error is one line, like every other user error (the usage is in --help)."""

    def error(self, message: str):  # type: ignore[override]
        raise _UsageError(f"{self.prog}: error: {message}; see {self.prog} --help")


def _add_global_flags(p: argparse.ArgumentParser, default: Any) -> None:
    """-v/-q/--json, on the top parser and on every verb's, so they go before or after the verb."""
    p.add_argument("-v", "--verbose", action="store_true", default=default, help="show tracebacks and debug logs")
    p.add_argument("-q", "--quiet", action="store_true", default=default, help="print nothing but errors (exit status unchanged)")
    p.add_argument("--json", action="store_true", default=default, help="print the results as one JSON document on stdout (logs and progress on stderr)")


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The parser of every verb, or of ``only`` (each verb module imports what it needs, so
    building one parser keeps a command's start-up to its own imports)."""
    from .. import __version__

    parser = _Parser(prog="trtcompress", description="Compress models for NVIDIA inference; CPU path through ONNX Runtime.")
    parser.add_argument("--version", action="version", version=f"trtcompress {__version__}")
    _add_global_flags(parser, False)
    sub = parser.add_subparsers(dest="verb", metavar="VERB", required=True)
    for verb, module in VERBS.items():
        if only is not None and verb != only:
            continue
        mod = importlib.import_module(f"{__package__}.{module}")
        p = mod.add_parser(sub)
        _add_global_flags(p, argparse.SUPPRESS)
        p.set_defaults(_run=mod.run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    from ..errors import UserError
    from .common import Output

    argv = list(sys.argv[1:] if argv is None else argv)
    verb = next((a for a in argv if not a.startswith("-")), None)
    try:
        args = build_parser(verb if verb in VERBS else None).parse_args(argv)
    except _UsageError as e:
        return _error(str(e), str(e), "UsageError", 2, verb, "--json" in argv)
    args.command_line = ["trtcompress", *argv]  # as typed, for reports that say how to reproduce a run
    verbose, quiet, as_json = (getattr(args, k, False) for k in ("verbose", "quiet", "json"))
    logging.basicConfig(format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger().setLevel(logging.DEBUG if verbose else logging.ERROR if quiet else logging.WARNING)
    try:
        with _streams(quiet and not verbose, as_json):
            out = args._run(args)
    except UserError as e:
        if verbose:
            raise
        return _error(f"trtcompress {args.verb}: error: {e}", str(e), type(e).__name__, 2, args.verb, as_json)
    except KeyboardInterrupt:
        why = "interrupted; files being written were discarded: run the command again to finish"
        return _error(f"trtcompress {args.verb}: {why}", why, "KeyboardInterrupt", 130, args.verb, as_json)
    if not isinstance(out, Output):  # a verb that prints for itself
        return int(out or 0)
    try:
        if as_json:
            print(json.dumps(out.data, indent=2, default=str))
        elif not quiet:
            out.show()
    except BrokenPipeError:  # the reader went away (| head): nothing left to show
        pass
    return out.code


@contextlib.contextmanager
def _streams(quiet: bool, as_json: bool) -> Iterator[None]:
    """While the verb runs: under ``--quiet`` stdout and stderr go nowhere and progress is off;
    under ``--json`` whatever is printed to stdout (a library's chatter) goes to stderr, so the
    document printed after is the only thing there. Errors are printed after the block."""
    from .. import progress

    with contextlib.ExitStack() as stack:
        stack.enter_context(progress.configured(enabled=not quiet))
        if quiet:
            sink = stack.enter_context(open(os.devnull, "w"))
            stack.enter_context(contextlib.redirect_stdout(sink))
            stack.enter_context(contextlib.redirect_stderr(sink))
        elif as_json:
            stack.enter_context(contextlib.redirect_stdout(sys.stderr))
        stack.callback(progress.end_all)
        yield


def _error(line: str, message: str, kind: str, code: int, verb: str | None, as_json: bool) -> int:
    """The one-line error on stderr; with ``--json`` also ``{"error": ...}`` as stdout's one document."""
    print(line, file=sys.stderr)
    if as_json:
        print(json.dumps({"verb": verb, "error": {"type": kind, "message": message}, "exit_code": code}, indent=2))
    return code


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
