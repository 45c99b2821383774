from __future__ import annotations

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

from trtcompress.benchmark import BenchConfig, bench, latency_stats
from trtcompress.comparison import CompareConfig, compare, exact_qdq_options
from trtcompress.data import model_inputs, open_source
from trtcompress.data.readers import ReaderOptions
from trtcompress.errors import ConfigError
from trtcompress.metrics import compression_ratio, pruning_rate, quantization_error, weight_stats
from trtcompress.model_io import load_model, save_model
from trtcompress.runners import RunnerOptions

from trtc_support import tiny_classifier


def _perturbed(src, dst, scale: float):
    m = load_model(src)
    for t in m.graph.initializer:
        if t.name == "fc":
            a = numpy_helper.to_array(t)
            t.CopyFrom(numpy_helper.from_array(a + scale * np.sign(a), "fc"))
    return save_model(m, dst)


def _source(model, n=4, batch=4):
    return open_source(f"random:{n}", model_inputs(model), ReaderOptions(batch_size=batch))


def test_identical_models_agree(tiny_model):
    r = compare(tiny_model, tiny_model, _source(tiny_model), CompareConfig(atol=0.0, min_cosine=1.0, min_top1=1.0))
    o = r.outputs["logits"]
    assert r.passed and r.samples == 16 and o["max_abs"] == 0 and o["top1_agreement"] == 1.0


def test_perturbed_model_fails_the_tolerances(tiny_model, tmp_path):
    cand = _perturbed(tiny_model, tmp_path / "p.onnx", 0.5)
    r = compare(tiny_model, cand, _source(tiny_model), CompareConfig(atol=1e-3, rtol=1e-3))
    o = r.outputs["logits"]
    assert not r.passed and o["max_abs"] > 1e-3 and o["outside_tolerance"] > 0
    assert 0 < o["mean_abs"] <= o["max_abs"] and o["median_abs"] <= o["max_abs"]
    assert "logits" in r.failures[0]


def test_compare_errors_match_numpy(tiny_model, tmp_path):
    import onnxruntime as ort

    cand = _perturbed(tiny_model, tmp_path / "p.onnx", 0.1)
    feeds = list(_source(tiny_model, n=2))
    r = compare(tiny_model, cand, feeds)
    a = np.concatenate([ort.InferenceSession(str(tiny_model)).run(None, f)[0] for f in feeds])
    b = np.concatenate([ort.InferenceSession(str(cand)).run(None, f)[0] for f in feeds])
    o = r.outputs["logits"]
    np.testing.assert_allclose(o["max_abs"], np.abs(a - b).max(), rtol=1e-6)
    np.testing.assert_allclose(o["mean_abs"], np.abs(a - b).mean(), rtol=1e-6)
    cos = (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)
    np.testing.assert_allclose(o["cosine_min"], cos.min(), rtol=1e-6)
    assert o["top1_agreement"] == np.mean(a.argmax(1) == b.argmax(1))


def test_bench_interleaves_and_reports(tiny_model, tmp_path):
    other = tiny_classifier(tmp_path / "other.onnx", seed=1)
    r = bench([tiny_model, other], BenchConfig(batch_sizes=(1, 4), warmup=2, iterations=20, rounds=4))
    for b in (1, 4):
        for label in r.models:
            s = r.results[b][label]
            assert s["iterations"] == 20 and 0 < s["min_ms"] <= s["p50_ms"] <= s["p90_ms"] <= s["p99_ms"]
            assert s["throughput_per_s"] == pytest.approx(b * 1e3 / s["mean_ms"])
        assert r.ratios[b][r.models[0]] == 1.0


def test_bench_times_each_model_with_only_its_own_session_alive(tiny_model, tmp_path, monkeypatch):
    """Idle ONNX Runtime sessions keep spinning worker threads that slow the one being timed."""
    from trtcompress.runners import onnxrt, registry

    live, seen = [], []

    def probing(model_path, options):
        runner = onnxrt.onnxrt_runner(model_path, options)
        activate, deactivate, infer = runner.activate, runner.deactivate, runner.infer
        runner.activate = lambda: (live.append(model_path), activate())[1]
        runner.deactivate = lambda: (live.remove(model_path), deactivate())[1]
        runner.infer = lambda *a, **k: (seen.append(list(live)), infer(*a, **k))[1]
        return runner

    monkeypatch.setitem(registry._BACKENDS, "probe", probing)
    other = tiny_classifier(tmp_path / "other.onnx", seed=1)
    bench([tiny_model, other], BenchConfig(batch_sizes=(2,), warmup=1, iterations=6, rounds=3), backend="probe")
    assert len(seen) == 2 * 3 * (1 + 2) and all(len(v) == 1 for v in seen) and not live


def _counting(monkeypatch, name: str) -> dict[str, int]:
    """A backend ``name`` that is ONNX Runtime's, counting every inference per model."""
    from trtcompress.runners import onnxrt, registry

    calls: dict[str, int] = {}

    def counting(model_path, options):
        runner = onnxrt.onnxrt_runner(model_path, options)
        infer = runner.infer
        runner.infer = lambda *a, **k: (calls.__setitem__(str(model_path), calls.get(str(model_path), 0) + 1), infer(*a, **k))[1]
        return runner

    monkeypatch.setitem(registry._BACKENDS, name, counting)
    return calls


def test_bench_warmup_follows_the_iterations(tiny_model, monkeypatch):
    """Warm-up never outnumbers the timed runs: 4 iterations over (at most) 5 rounds are 4 turns of
    one warm-up and one timed run, not 5 timed runs and 15 warm-up runs."""
    calls = _counting(monkeypatch, "count-warmup")
    r = bench([tiny_model], BenchConfig(batch_sizes=(2,), warmup=3, iterations=4, rounds=5), backend="count-warmup")
    assert r.results[2][r.models[0]]["iterations"] == 4 and calls[str(tiny_model)] == 8
    calls.clear()
    r = bench([tiny_model], BenchConfig(batch_sizes=(2,), warmup=3, iterations=50, rounds=5), backend="count-warmup")
    assert r.results[2][r.models[0]]["iterations"] == 50 and calls[str(tiny_model)] == 50 + 15


@pytest.mark.parametrize("budget, timed, warmup", [(1e-9, 2, 2), (1e6, 30, 9)])
def test_bench_budget_bounds_the_runs(tiny_model, tmp_path, monkeypatch, budget, timed, warmup):
    """Past the budget a model keeps one timed run and one warm-up run per round (the interleaving
    stays), and no round after the second starts (benchmark.MIN_ROUNDS); within it, every
    iteration runs."""
    other = tiny_classifier(tmp_path / "other.onnx", seed=1)
    calls = _counting(monkeypatch, "count-budget")
    r = bench([tiny_model, other], BenchConfig(batch_sizes=(2,), warmup=3, iterations=30, rounds=3, budget=budget), backend="count-budget")
    for label, path in zip(r.models, (tiny_model, other)):
        assert r.results[2][label]["iterations"] == timed
        assert calls[str(path)] == timed + warmup
    with pytest.raises(ConfigError, match="budget"):
        BenchConfig(budget=0)


def test_bench_static_batch_is_refused(tmp_path):
    m = tiny_classifier(tmp_path / "s.onnx", dynamic=False)
    with pytest.raises(ConfigError, match="fixed batch"):
        bench([m], BenchConfig(batch_sizes=(4,), iterations=1, rounds=1, warmup=0))


def test_latency_stats():
    s = latency_stats([0.001] * 99 + [0.1], batch=2)
    assert s["p50_ms"] == pytest.approx(1.0) and s["p99_ms"] > 1.0 and s["mean_ms"] == pytest.approx(1.99)


def test_metrics(tiny_model, tmp_path):
    m = load_model(tiny_model)
    for t in m.graph.initializer:
        if t.name == "w":
            a = numpy_helper.to_array(t).copy()
            a.reshape(-1)[::2] = 0  # half the conv weights pruned
            t.CopyFrom(numpy_helper.from_array(a, "w"))
    pruned = save_model(m, tmp_path / "pruned.onnx")
    ws = weight_stats(tiny_model)
    assert ws["parameters"] == 16 * 27 + 16 + 5 * 16 + 5
    pr = pruning_rate(ws["parameters"], 216)
    assert pr["total"] == ws["parameters"] and pr["percent"] == pytest.approx(100 * 216 / ws["parameters"])
    cr = compression_ratio(tiny_model, pruned)
    assert cr["ratio_parameters"] == 1.0
    assert cr["ratio_nonzero_parameters"] == pytest.approx(ws["nonzero"] / (ws["nonzero"] - 216))
    q = quantization_error({"outputs": {"a": {"max_abs": 0.5, "mean_abs": 0.1}, "b": {"max_abs": 0.2, "mean_abs": 0.3}}})
    assert q == {"max_abs": 0.5, "mean_abs": pytest.approx(0.2)}


def _qdq_model(zero_point_type):
    zp = numpy_helper.from_array(np.zeros((), {TensorProto.INT8: np.int8, TensorProto.UINT8: np.uint8}[zero_point_type]), "zp")
    s = numpy_helper.from_array(np.array(0.1, np.float32), "s")
    nodes = [helper.make_node("QuantizeLinear", ["x", "s", "zp"], ["q"]), helper.make_node("DequantizeLinear", ["q", "s", "zp"], ["y"])]
    g = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])], [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])], [zp, s])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    return m


def test_tensorrt_form_is_compared_with_exact_qdq_arithmetic(tmp_path):
    signed = save_model(_qdq_model(TensorProto.INT8), tmp_path / "s.onnx")
    unsigned = save_model(_qdq_model(TensorProto.UINT8), tmp_path / "u.onnx")
    assert exact_qdq_options(signed, RunnerOptions()).optimization == "basic"
    assert exact_qdq_options(unsigned, RunnerOptions()).optimization == "all"
    assert exact_qdq_options(signed, RunnerOptions(optimization="disable")).optimization == "disable"
    r = compare(signed, signed, [{"x": np.ones(1, np.float32)}])
    assert r.runner["optimization"] == "basic"
