"""Read-only and full output folders, made real with small tmpfs mounts (root only; skipped
elsewhere): the write fails with a one-line error and the folder keeps what it held."""
from __future__ import annotations

import contextlib
import os
import subprocess
from pathlib import Path

import pytest

from badinput_support import BadRun, snapshot
from trtc_support import tiny_classifier


@contextlib.contextmanager
def tmpfs(path: Path, size: str):
    path.mkdir()
    if os.geteuid() != 0:
        pytest.skip("mounting a small file system needs root")
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)], capture_output=True, text=True)
    if proc.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {proc.stderr.strip()}")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


def _earlier(folder: Path) -> None:
    tiny_classifier(folder / "earlier.onnx", seed=7)
    (folder / "earlier.json").write_text('{"kept": true}\n')


@pytest.fixture
def readonly(tmp_path):
    with tmpfs(tmp_path / "ro", "1m") as d:
        _earlier(d)
        subprocess.run(["mount", "-o", "remount,ro", str(d)], check=True)
        yield d


@pytest.fixture
def full(tmp_path):
    with tmpfs(tmp_path / "full", "64k") as d:
        _earlier(d)
        fd = os.open(d / "filler", os.O_WRONLY | os.O_CREAT)
        try:  # fill what is left, a page at a time
            while True:
                os.write(fd, b"\0" * 4096)
        except OSError:
            pass
        finally:
            os.close(fd)
        yield d


@pytest.mark.parametrize("verb", ["quantize", "sparsify", "lowrank"])
def test_readonly_output_folder(verb, readonly, tiny_model, tmp_path, capsys):
    import numpy as np

    extra = []
    if verb == "quantize":
        (tmp_path / "c").mkdir()
        np.savez(tmp_path / "c" / "s.npz", x=np.ones((2, 3, 16, 16), np.float32))
        extra = ["--calib", str(tmp_path / "c")]
    BadRun(capsys, readonly)([verb, tiny_model, *extra, "-o", readonly / "new.onnx"], r"cannot write .*read-only.*another output folder")


@pytest.mark.parametrize("verb", ["quantize", "sparsify"])
def test_full_output_folder(verb, full, tmp_path, capsys):
    import numpy as np

    model = tiny_classifier(tmp_path / "m.onnx")  # the folder has no page left for it
    extra = []
    if verb == "quantize":
        (tmp_path / "c").mkdir()
        np.savez(tmp_path / "c" / "s.npz", x=np.ones((2, 3, 16, 16), np.float32))
        extra = ["--calib", str(tmp_path / "c")]
    BadRun(capsys, full)([verb, model, *extra, "-o", full / "new.onnx"], r"cannot write .*disk is full.*free space")


def test_report_into_full_folder(full, tiny_model, tmp_path, capsys):
    """A report that does not fit: the one-line error, the report folder unchanged."""
    before = snapshot(full)
    BadRun(capsys, full)(["sparsify", tiny_model, "-o", tmp_path / "s.onnx", "--report", full / "r.json", "--json"], r"cannot write .*disk is full")
    assert snapshot(full) == before
