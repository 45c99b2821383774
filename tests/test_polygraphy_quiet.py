"""Polygraphy's "'colored' module is not installed" hint never reaches trtcompress's users: the
runners turn its colours off before it logs (the hint is printed to stdout on the first coloured
message when the optional ``colored`` package is missing)."""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from trtcompress._optional import available
from trtc_support import tiny_classifier

ROOT = Path(__file__).resolve().parents[1]

# a real Polygraphy warning: deactivating a runner that is not active
SCRIPT = textwrap.dedent("""
    import sys
    {setup}
    from polygraphy.backend.onnxrt import OnnxrtRunner, SessionFromOnnx
    OnnxrtRunner(SessionFromOnnx(sys.argv[1])).deactivate()
""")


def _run(setup: str, model: Path) -> str:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run([sys.executable, "-c", SCRIPT.format(setup=setup), str(model)], capture_output=True, text=True, env=env, timeout=60)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout + proc.stderr


@pytest.mark.skipif(available("colored"), reason="the hint only exists without the colored package")
def test_polygraphy_warnings_come_without_the_colored_hint(tmp_path):
    model = tiny_classifier(tmp_path / "m.onnx")
    plain = _run("", model)
    assert "'colored' module is not installed" in plain  # what users saw before
    ours = _run("import trtcompress.runners.onnxrt", model)
    assert "Not active" in ours  # the warning itself still shows
    assert "colored" not in ours
