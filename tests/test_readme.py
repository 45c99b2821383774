"""The README's Python example runs as written."""
from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"


@pytest.mark.torch
def test_readme_python_example_runs(tmp_path):
    block = re.search(r"```python\n(.*?)```", README.read_text(), re.S).group(1)
    (tmp_path / "net.py").write_text(
        "import torch\nfrom torch import nn\n"
        "def make_model():\n    torch.manual_seed(0)\n"
        "    return nn.Sequential(nn.Conv2d(3, 8, 3, stride=4), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 10))\n"
    )
    proc = subprocess.run([sys.executable, "-c", block], cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    assert "compression" in proc.stdout and "True" in proc.stdout
    assert (tmp_path / "runs" / "mine" / "report.json").exists()


def test_readme_names_the_two_commands():
    text = README.read_text()
    assert "scripts/setup.sh && .venv/bin/trtcompress demo" in text
    assert "scripts/setup.sh && .venv/bin/python -m pytest -q" in text
    ci = (README.parent / ".ci" / "run").read_text()
    assert "scripts/setup.sh" in ci and ".venv/bin/python -m pytest -q" in ci
