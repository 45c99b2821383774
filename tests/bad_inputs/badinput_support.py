"""Helpers of the bad-input catalogue: a driver for the CLI that
checks what every bad input must give: a non-zero exit, one line on stderr naming the problem and
the fix, no traceback, and an output folder left exactly as it was."""
from __future__ import annotations

import hashlib
import re
import shutil
from pathlib import Path

import onnx

from trtcompress.cli.main import main


def snapshot(folder: Path) -> dict[str, str]:
    """Every entry under ``folder`` (hidden ones too) with a digest of its bytes."""
    out = {}
    for p in sorted(folder.rglob("*")):
        rel = str(p.relative_to(folder))
        out[rel] = "dir" if p.is_dir() else hashlib.sha256(p.read_bytes()).hexdigest()
    return out


class BadRun:
    """Runs ``main(argv)`` in-process and checks the bad-input contract."""

    def __init__(self, capsys, out: Path):
        self.capsys, self.out = capsys, out

    def __call__(self, argv: list[str], expect: str, code: int | None = None) -> str:
        before = snapshot(self.out)
        self.capsys.readouterr()
        rc = main([str(a) for a in argv])
        cap = self.capsys.readouterr()
        # what a terminal shows: a progress bar is redrawn in place with \r and cleared at the end
        shown = [ln.split("\r")[-1] for ln in cap.err.split("\n")]
        shown = [ln for ln in shown if ln.strip()]
        assert rc != 0, f"exit 0 for a bad input; stdout: {cap.out[-500:]}"
        if code is not None:
            assert rc == code
        assert "Traceback" not in cap.err, cap.err
        verb = next(a for a in argv if not str(a).startswith("-"))
        errors = [ln for ln in shown if ln.startswith(f"trtcompress {verb}: error: ")]
        assert len(errors) == 1 and shown[-1] == errors[0], f"expected one error line, last on stderr, got:\n{cap.err}"
        # progress lines ("loading ...") may come before it; warnings and other errors may not
        assert not [ln for ln in shown[:-1] if re.search(r"warn|error|exception", ln, re.I)], cap.err
        line = errors[0]
        assert re.search(expect, line, re.I), f"{expect!r} not in {line!r}"
        assert snapshot(self.out) == before, "the output folder changed"
        return line


def _save(model: onnx.ModelProto, path: Path, check: bool = True) -> None:
    model.ir_version = 8
    if check:
        onnx.checker.check_model(model)
    onnx.save(model, str(path))


def copy_model(models: Path, name: str, dest: Path) -> Path:
    """A private copy of a session model (and its folder, for external data) to damage."""
    src = models / name
    if src.parent.name == "ext" or name.startswith("ext/"):
        shutil.copytree(src.parent, dest / "ext")
        return dest / "ext" / src.name
    shutil.copy(src, dest / src.name)
    return dest / src.name
