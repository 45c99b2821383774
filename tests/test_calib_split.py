"""``compress`` never calibrates on its evaluation data unless told to: a stage that reads data needs
``--calib``, or ``--calib-from-data split`` (disjoint halves of ``--data``, recorded in the report),
or ``--calib-from-data same`` (said in the report)."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from trtc_support import cli
from trtcompress.errors import ConfigError
from trtcompress.job import CompressConfig, compress, stage_config
from trtcompress.zoo.models import onnx_path

FASHION = Path(__file__).resolve().parents[1] / "calibration" / "fashion_mnist"


def test_a_stage_that_reads_data_needs_calibration_data(tmp_path):
    r = cli("compress", str(onnx_path("fashion_cnn")), "--stages", "quantize", "--data", str(FASHION), "--no-bench", "--runs-dir", str(tmp_path / "runs"))
    assert r.returncode == 2 and "--calib DATA" in r.stderr and "--calib-from-data split" in r.stderr and "Traceback" not in r.stderr
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())
    with pytest.raises(ConfigError, match="not both"):
        CompressConfig(model="m.onnx", calib="c/", calib_from_data="split")
    with pytest.raises(ConfigError, match="needs --data to be a directory"):
        compress(CompressConfig(model=str(onnx_path("fashion_cnn")), stages=(stage_config("quantize"),), data="random:2", calib_from_data="split", runs_dir=str(tmp_path / "r2"), skip_bench=True))


def test_split_calibrates_and_evaluates_on_disjoint_files(tmp_path):
    stages = (stage_config("quantize", {"target": "cpu", "sensitivity_samples": 0}),)
    config = CompressConfig(model=str(onnx_path("fashion_cnn")), name="split", runs_dir=str(tmp_path), stages=stages, data=str(FASHION), calib_from_data="split", skip_bench=True)
    report = compress(config).report
    split = report["data_split"]
    files = sorted(p.name for p in FASHION.glob("*.npz"))
    assert split["mode"] == "split" and not set(split["calibration"]) & set(split["evaluation"])
    assert sorted(split["calibration"] + split["evaluation"]) == files and split["calibration"] == files[0::2]
    assert report["stages"][-1]["report"]["calibration_samples"] == 64 * len(split["calibration"])
    assert report["compare"]["samples"] == 64 * len(split["evaluation"]) and report["passed"]
    assert json.loads((tmp_path / "split" / "report.json").read_text())["data_split"] == split


def test_same_is_said_in_the_report(tmp_path):
    stages = (stage_config("quantize", {"target": "cpu", "sensitivity_samples": 0}),)
    config = CompressConfig(model=str(onnx_path("fashion_cnn")), name="same", runs_dir=str(tmp_path), stages=stages, data=str(FASHION), calib_from_data="same", limit=64, skip_bench=True)
    assert "evaluation data" in compress(config).report["data_split"]["note"]
