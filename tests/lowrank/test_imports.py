"""The low-rank and finetune packages import without torch (torch loads only when used)."""
from __future__ import annotations

import subprocess
import sys


def test_no_torch_on_import():
    code = "import sys, trtcompress.lowrank, trtcompress.finetune, trtcompress.stages.lowrank, trtcompress.cli.finetune; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "False"
