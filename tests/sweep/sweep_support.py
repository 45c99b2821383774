"""Shared by the sweep tests: the data and a verb run with --json."""
from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path

from trtcompress.cli.main import main

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT / "calibration" / "fashion_mnist"


def json_main(argv: list[str]) -> tuple[int, dict]:
    """The exit status and the one JSON document ``trtcompress ... --json`` prints."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = main([*argv, "--json"])
    return code, json.loads(out.getvalue())
