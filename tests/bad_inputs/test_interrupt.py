"""Ctrl-C (SIGINT) in a real ``trtcompress`` process: during calibration and during the write of
the output. Exit 130, one line, no traceback, the output folder as it was."""
from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np

from badinput_support import snapshot
from trtc_support import tiny_classifier

ROOT = Path(__file__).resolve().parents[2]


def _env() -> dict:
    return {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}


def _check_interrupted(proc: subprocess.Popen, err: str, out: Path, before: dict) -> None:
    assert proc.returncode == 130, err
    assert "Traceback" not in err, err
    shown = [ln.split("\r")[-1] for ln in err.split("\n")]
    shown = [ln for ln in shown if ln.strip()]
    assert shown[-1].startswith("trtcompress quantize: interrupted;") and "again" in shown[-1], err
    assert snapshot(out) == before


def test_sigint_during_calibration(tmp_path, out_dir):
    model = tiny_classifier(tmp_path / "m.onnx")
    calib = tmp_path / "calib"
    calib.mkdir()
    rng = np.random.default_rng(0)
    for i in range(400):  # 3200 batches of 2: calibration runs for seconds
        np.savez(calib / f"s{i:04d}.npz", x=rng.standard_normal((16, 3, 16, 16)).astype(np.float32))
    before = snapshot(out_dir)
    proc = subprocess.Popen([sys.executable, "-m", "trtcompress.cli.main", "quantize", str(model), "--calib", str(calib), "--batch", "2", "-o", str(out_dir / "q.onnx")],
                            stderr=subprocess.PIPE, stdout=subprocess.PIPE, env=_env())
    seen = b""
    deadline = time.monotonic() + 120
    started = re.compile(rb"calibrating: [1-9][0-9]*/")  # the progress line has counted a batch
    while not started.search(seen) and time.monotonic() < deadline:
        chunk = os.read(proc.stderr.fileno(), 4096)
        if not chunk:
            break
        seen += chunk
    assert started.search(seen) and proc.poll() is None, seen.decode(errors="replace")
    proc.send_signal(signal.SIGINT)
    _, rest = proc.communicate(timeout=120)
    _check_interrupted(proc, (seen + rest).decode(errors="replace"), out_dir, before)


def test_sigint_during_write(tmp_path, out_dir):
    """The signal arrives while the model's bytes are on disk under a temporary name, before the
    rename: a driver wraps ``onnx.save_model`` to deliver a real SIGINT to its own process there."""
    model = tiny_classifier(tmp_path / "m.onnx")
    calib = tmp_path / "calib"
    calib.mkdir()
    np.savez(calib / "s.npz", x=np.ones((4, 3, 16, 16), np.float32))
    driver = tmp_path / "driver.py"
    driver.write_text(textwrap.dedent("""
        import os, signal, sys
        import onnx
        from trtcompress.cli.main import main

        save = onnx.save_model

        def save_then_interrupt(model, path, *a, **k):
            save(model, path, *a, **k)
            assert os.path.getsize(path) > 0  # the temporary file is written
            os.kill(os.getpid(), signal.SIGINT)

        onnx.save_model = save_then_interrupt
        sys.exit(main(sys.argv[1:]))
    """))
    before = snapshot(out_dir)
    proc = subprocess.Popen([sys.executable, str(driver), "quantize", str(model), "--calib", str(calib), "-o", str(out_dir / "earlier.onnx")],
                            stderr=subprocess.PIPE, stdout=subprocess.PIPE, env=_env())
    _, err = proc.communicate(timeout=120)
    # the earlier artifact of the same name is intact, and no temporary file is left beside it
    _check_interrupted(proc, err.decode(errors="replace"), out_dir, before)
