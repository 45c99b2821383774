"""Range choice by the consuming layers' error: candidates from one histogram, one shadow pass."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from trtcompress.model_io import load_model
from trtcompress.quant.calibrate import collect_statistics, compute_amax
from trtcompress.quant.placement import plan_quantization
from trtcompress.quant.sensitivity import analyse, candidate_ranges
from trtcompress.quant.table import CalibrationTable
from trtcompress.stages.quantize import QuantizeConfig, quantize

import qdq_graphs as graphs
from qdq_helpers import calibrate_for_test, run

ROOT = Path(__file__).resolve().parents[2]


def test_candidates_are_the_other_methods_on_the_same_histogram():
    model = graphs.mbconv()
    plan = plan_quantization(model)
    stats = collect_statistics(model, plan.activation_tensors, graphs.feeds(model))
    table = compute_amax(stats, "entropy", ("entropy", "mse", "percentile"))
    for t in plan.activation_tensors:
        c = table.details["tensors"][t]["candidates"]
        assert set(c) == {"mse", "percentile"}  # the method itself is not repeated
        assert c["mse"] == compute_amax(stats, "mse").amax[t]
        assert c["percentile"] == compute_amax(stats, "percentile").amax[t]
    assert "candidates" not in compute_amax(stats, "entropy").details["tensors"][plan.activation_tensors[0]]


def test_candidate_ranges_start_with_the_table_and_drop_duplicates():
    table = CalibrationTable({"t": 2.0}, "entropy", 1, {"tensors": {"t": {"max": 4.0, "candidates": {"mse": 2.0000001, "percentile": 3.0}}}})
    assert candidate_ranges(table, "t") == {"method": 2.0, "max": 4.0, "percentile": 3.0}
    assert candidate_ranges(CalibrationTable({"t": 2.0}, "max"), "t") == {"method": 2.0}  # a table saved without details


def test_search_restores_a_clipped_range_and_leaves_kept_tensors_alone():
    model = graphs.mbconv()
    plan = plan_quantization(model)
    feeds = graphs.feeds(model)
    table = calibrate_for_test(model, plan, feeds)
    good = table.amax["a1"]
    table.amax["a1"] /= 50  # as if a method had clipped the depthwise conv's input hard
    found = analyse(model, plan, table, feeds)
    refined, changes = found.table, found.refined
    assert [(c["tensor"], c["candidate"]) for c in changes] == [("a1", "max")]
    assert refined.amax["a1"] == pytest.approx(good)
    assert changes[0]["sqnr_db"][1] > changes[0]["sqnr_db"][0] + 10
    assert table.amax["a1"] == pytest.approx(good / 50)  # the input table is not modified
    kept = analyse(model, plan, table, feeds, keep=["a1"])
    assert kept.refined == [] and kept.table.amax["a1"] == table.amax["a1"]


def _sqnr_db(ref: np.ndarray, got: np.ndarray) -> float:
    return float(10 * np.log10(np.sum(ref.astype(np.float64) ** 2) / np.sum((got.astype(np.float64) - ref) ** 2)))


def test_fashion_cnn_ranges_chosen_by_layer_error_bring_int8_closer_to_fp32():
    """The shipped CNN, calibrated (entropy) on the shipped 512 Fashion-MNIST images: entropy clips
    the first ReLU outputs at about half their range; choosing each tensor's range by its layers'
    error raises the logits' SQNR against FP32 on held-out test images by more than 1.5 dB."""
    zoo = pytest.importorskip("trtcompress.zoo")
    model = load_model(zoo.onnx_path("fashion_cnn"))
    calib = str(ROOT / "calibration" / "fashion_mnist")
    x, y = zoo.fashion_mnist("test", limit=2000)
    ev = [{"x": x[i : i + 500]} for i in range(0, len(x), 500)]
    ref = np.concatenate(run(model, ev))
    out = {}
    for refine in (False, True):
        result = quantize(model, QuantizeConfig(calib=calib, method="entropy", refine_ranges=refine, progress=False))
        out[refine] = (np.concatenate(run(result.model, ev, optimize=False)), result.report)
    changes = {c["tensor"]: c for c in out[True][1]["refined_ranges"]}
    first = changes["/features/features.1/Relu_output_0"]
    assert first["method_amax"] < first["amax"] and first["sqnr_db"][1] > first["sqnr_db"][0] + 5
    before, after = _sqnr_db(ref, out[False][0]), _sqnr_db(ref, out[True][0])
    assert after > before + 1.5, (before, after)
    assert np.mean(out[True][0].argmax(1) == ref.argmax(1)) >= 0.995
    assert abs(np.mean(out[True][0].argmax(1) == y) - np.mean(ref.argmax(1) == y)) <= 0.003
