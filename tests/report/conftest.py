"""One real compress run shared by the report tests: fashion_cnn (the zoo's ONNX export) through
low-rank, 2:4 and INT8 on Fashion-MNIST, so its report has every per-layer section (about 10 s)."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def fashion_run(tmp_path_factory) -> Path:
    from trtcompress.cli.main import main
    from trtcompress.zoo import onnx_path

    runs = tmp_path_factory.mktemp("runs")
    code = main(["compress", str(onnx_path("fashion_cnn")), "--stages", "lowrank,sparsify,quantize",
                 "--data", str(ROOT / "calibration" / "fashion_mnist"), "--calib-from-data", "split",
                 "--runs-dir", str(runs), "--name", "fashion", "--batch-sizes", "1,4", "--iterations", "12", "--rounds", "2"])
    assert code in (0, 1)  # 1: a threshold missed; the report is complete either way
    return runs / "fashion"


@pytest.fixture(scope="session")
def fashion_report(fashion_run: Path) -> dict:
    return json.loads((fashion_run / "report.json").read_text())
