"""Per-layer error and the accuracy-target fallback."""
from __future__ import annotations

import math

import pytest

from trtcompress.errors import ConfigError
from trtcompress.quant.placement import plan_quantization
from trtcompress.quant.sensitivity import AccuracyTarget, fallback_to_target, layer_errors, parse_accuracy_target

import qdq_graphs as graphs
from qdq_helpers import calibrate_for_test, case  # noqa: F401 (case is a fixture)


def test_layer_errors_cover_every_quantized_layer_worst_first(case):
    name, model, plan, table, feeds = case
    errs = layer_errors(model, plan, table, feeds)
    assert {e.node for e in errs} == set(plan.quantized_nodes)
    local = [e.local_sqnr_db for e in errs]
    assert local == sorted(local)
    assert all(math.isfinite(v) and v > 10 for v in local), name
    assert all(math.isfinite(e.cumulative_sqnr_db) for e in errs)


def test_a_layer_with_a_bad_range_ranks_first():
    model = graphs.mbconv()
    plan = plan_quantization(model)
    feeds = graphs.feeds(model)
    table = calibrate_for_test(model, plan, feeds)
    table.amax["a1"] /= 50  # clip the depthwise conv's input hard
    errs = layer_errors(model, plan, table, feeds)
    assert errs[0].node == "depthwise"


def test_fallback_keeps_the_most_sensitive_layers_float_until_met():
    model = graphs.mbconv()
    plan = plan_quantization(model)
    feeds = graphs.feeds(model)
    table = calibrate_for_test(model, plan, feeds)
    table.amax["a1"] /= 50
    ranking = layer_errors(model, plan, table, feeds)
    new, history, met = fallback_to_target(model, plan, table, ranking, AccuracyTarget("cosine", 0.999), graphs.feeds(model, seed=7))
    assert met
    assert "depthwise" not in new.quantized_nodes
    assert new.float_nodes["depthwise"] == "kept float for the accuracy target"
    assert history[0]["kept_float"] == 0 and history[0]["cosine"] < 0.999
    assert history[-1]["cosine"] >= 0.999 or any(h["cosine"] >= 0.999 for h in history)


def test_target_already_met_changes_nothing(case):
    _, model, plan, table, feeds = case
    ranking = layer_errors(model, plan, table, feeds)
    new, history, met = fallback_to_target(model, plan, table, ranking, AccuracyTarget("cosine", 0.5), feeds)
    assert met and new.quantized_nodes == plan.quantized_nodes and len(history) == 1


@pytest.mark.parametrize("text, metric, value", [("top1>=0.95", "top1", 0.95), ("cosine >= 0.999", "cosine", 0.999)])
def test_parse_accuracy_target(text, metric, value):
    t = parse_accuracy_target(text)
    assert (t.metric, t.value) == (metric, value)


@pytest.mark.parametrize("text", ["top1>0.9", "acc>=0.9", "top1>=1.5", "cosine>=x"])
def test_bad_accuracy_target(text):
    with pytest.raises(ConfigError):
        parse_accuracy_target(text)


def test_refinement_errors_equal_a_direct_measurement_of_the_refined_table():
    # the refined table's local errors are read off the two candidate shadows (or re-measured for
    # layers where only some inputs changed): they must equal measuring that table directly
    from trtcompress.quant.sensitivity import analyse

    model = graphs.mbconv()
    plan = plan_quantization(model)
    feeds = graphs.feeds(model)
    table = calibrate_for_test(model, plan, feeds)
    for t in ("a1", "a0"):
        table.details.setdefault("tensors", {})[t] = {"max": table.amax[t]}
        table.amax[t] /= 50  # clipped hard: refinement moves both back to their max
    found = analyse(model, plan, table, feeds)
    assert {c["tensor"] for c in found.refined} == {"a0", "a1"}
    direct = {e.node: e for e in layer_errors(model, plan, found.table, feeds)}
    for e in found.errors:
        assert e.local_sqnr_db == pytest.approx(direct[e.node].local_sqnr_db, abs=1e-6), e.node
        assert e.cumulative_sqnr_db == pytest.approx(direct[e.node].cumulative_sqnr_db, abs=1e-6), e.node


@pytest.mark.parametrize("build", [graphs.mbconv, graphs.encoder])
def test_chosen_ranges_errors_equal_a_direct_measurement(build):
    # with every candidate (entropy, MSE, percentile, max) in play, including layers with two
    # quantized inputs (attention matmuls) where one input may move and the other not
    from trtcompress.quant.calibrate import collect_statistics, compute_amax
    from trtcompress.quant.sensitivity import analyse

    model = build()
    plan = plan_quantization(model)
    feeds = graphs.feeds(model)
    stats = collect_statistics(model, plan.activation_tensors, feeds)
    table = compute_amax(stats, "entropy", ("mse", "percentile"))
    found = analyse(model, plan, table, feeds, margin_db=0.0)
    direct = {e.node: e for e in layer_errors(model, plan, found.table, feeds)}
    for e in found.errors:
        assert e.local_sqnr_db == pytest.approx(direct[e.node].local_sqnr_db, abs=1e-6), e.node


def test_shadow_settings_share_each_weight_quantized_once():
    """Range candidates move only activation ranges: every setting's shadow of a layer reads the
    same int8 weight (one copy in the graph; a 2 GB MatMul would otherwise be stored once per
    setting), and the errors are those measured one setting at a time."""
    from trtcompress.quant.sensitivity import _local_sqnr, _shadow_model
    from trtcompress.quant.table import CalibrationTable

    model = graphs.mbconv()
    plan = plan_quantization(model)
    feeds = graphs.feeds(model)
    table = calibrate_for_test(model, plan, feeds)
    moved = CalibrationTable({t: v * 0.7 for t, v in table.amax.items()}, table.method, table.num_samples, table.details)
    settings = [(plan, table), (plan, moved)]

    def int8_weights(m):
        return sorted(t.name for t in m.graph.initializer if t.name.endswith("_int8"))

    one = int8_weights(_shadow_model(model, settings[:1])[0])
    assert len(one) == len(plan.weights) > 0
    assert int8_weights(_shadow_model(model, settings)[0]) == one
    together = _local_sqnr(model, settings, feeds, 0)[0]
    alone = [_local_sqnr(model, [s], feeds, 0)[0][0] for s in settings]
    for got, want in zip(together, alone):
        assert got.keys() == want.keys()
        for n in got:
            assert got[n] == pytest.approx(want[n], abs=1e-6), n


@pytest.mark.parametrize("budget", [None, 0])
def test_cumulative_error_from_the_shadow_pass_equals_a_fresh_fp32_pass(monkeypatch, budget):
    """The shadow pass keeps the FP32 outputs for the cumulative pass (one session and one FP32
    run fewer); past the memory budget, with several batches, they are computed again. Either way
    the errors are those of a separate FP32 session."""
    from trtcompress.quant import sensitivity
    from trtcompress.quant.sensitivity import _cumulative_sqnr, analyse

    model = graphs.mbconv()
    plan = plan_quantization(model)
    feeds = graphs.feeds(model)
    assert len(feeds) > 1
    table = calibrate_for_test(model, plan, feeds)
    if budget is not None:
        monkeypatch.setattr(sensitivity, "REFERENCE_BUDGET", budget)
    found = analyse(model, plan, table, feeds)
    fresh = _cumulative_sqnr(model, plan, found.table, feeds, 0)
    assert {e.node: e.cumulative_sqnr_db for e in found.errors} == fresh


def test_the_accuracy_target_scores_the_exact_qdq_arithmetic_tensorrt_runs(efficientnet_onnx):
    """Candidate plans are scored with exact Q/DQ arithmetic (ONNX Runtime's basic level). The
    extended level fuses the TensorRT form into uint8 x int8 kernels that saturate on CPUs
    without VNNI: on EfficientNet-Lite0 they agree with FP32 on 0 of 8 photos where the exact
    arithmetic agrees on 7, and the target would keep layers float for nothing."""
    from trtcompress import zoo
    from trtcompress.model_io import load_model

    model = load_model(efficientnet_onnx)
    plan = plan_quantization(model)
    x = next(iter(zoo.photo_batch("calib", "efficientnet-lite", batch_size=8)))
    feeds = [{model.graph.input[0].name: x}]
    table = calibrate_for_test(model, plan, feeds)
    ranking = layer_errors(model, plan, table, feeds)
    new, history, met = fallback_to_target(model, plan, table, ranking, AccuracyTarget("top1", 0.75), feeds)
    assert met and history[0]["kept_float"] == 0 and history[0]["top1"] >= 0.75, history
    assert new.quantized_nodes == plan.quantized_nodes
