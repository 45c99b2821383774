"""The ``lowrank`` verb on the shipped Fashion-MNIST CNN."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnxruntime as ort

from trtc_support import cli
from trtcompress import zoo

CALIB = Path(__file__).resolve().parents[2] / "calibration" / "fashion_mnist"


def test_lowrank_verb_halves_the_flops_and_runs(tmp_path):
    out = tmp_path / "lr.onnx"
    r = cli("lowrank", str(zoo.onnx_path("fashion_cnn")), "-o", str(out), "--rule", "flops", "--flop-fraction", "0.5", "--json", check=True)
    report = json.loads(r.stdout)
    assert report["factorised"] > 0 and report["flops_after"] < 0.6 * report["flops_before"]
    x = np.random.default_rng(0).random((2, 1, 28, 28), dtype=np.float32)
    assert ort.InferenceSession(str(out)).run(None, {"x": x})[0].shape == (2, 10)


def test_error_rule_reads_calibration_data(tmp_path):
    out = tmp_path / "lr.onnx"
    r = cli("lowrank", str(zoo.onnx_path("fashion_cnn")), "-o", str(out), "--rule", "error", "--error", "0.2", "--data", str(CALIB), "--limit", "64")
    assert r.returncode == 0, r.stderr
    bad = cli("lowrank", str(zoo.onnx_path("fashion_cnn")), "-o", str(tmp_path / "x.onnx"), "--rule", "error", "--data", str(tmp_path / "missing"))
    assert bad.returncode == 2 and "not found" in bad.stderr and not (tmp_path / "x.onnx").exists()
