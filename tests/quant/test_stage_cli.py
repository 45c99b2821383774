"""The quantize stage and CLI verb, on tiny graphs and on the shipped Fashion-MNIST CNN."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest

from trtcompress.errors import ConfigError, DataError
from trtcompress.model_io import load_model
from trtcompress.quant.placement import plan_quantization
from trtcompress.quant.trt_rules import trt_qdq_violations
from trtcompress.stage import get_stage
from trtcompress.stages.quantize import QuantizeConfig, quantize


import qdq_graphs as graphs
from qdq_helpers import calibrate_for_test, cli, run


def _npz_dir(tmp: Path, feeds, name: str = "calib") -> Path:
    d = tmp / name
    d.mkdir()
    for i, f in enumerate(feeds):
        np.savez(d / f"{i:03d}.npz", **f)
    return d


@pytest.fixture
def mb(tmp_path):
    model = graphs.mbconv()
    feeds = graphs.feeds(model, n=4)
    table = calibrate_for_test(model, plan_quantization(model), feeds)
    (tmp_path / "table.json").write_text(table.to_json())
    onnx.save(model, tmp_path / "model.onnx")
    return model, feeds, tmp_path


def test_stage_is_registered():
    assert get_stage("quantize").config_type is QuantizeConfig


@pytest.mark.parametrize("target", ["tensorrt", "cpu"])
def test_stage_with_saved_table(mb, target):
    model, feeds, tmp = mb
    calib = _npz_dir(tmp, feeds)
    result = quantize(model, QuantizeConfig(target=target, table=str(tmp / "table.json"), calib=str(calib), sensitivity_samples=4))
    if target == "tensorrt":
        assert trt_qdq_violations(result.model) == []
    else:
        assert result.report["cpu"]["ops"]["QLinearConv"] >= 3
        assert result.report["cpu"]["kept_float"] == []  # every conv writes uint8: INT8 pays everywhere
    assert result.report["plan"]["quantized_nodes"] == 7
    assert len(result.report["layer_error"]) == 7
    assert json.loads(result.artifacts["calibration.json"])["amax"]
    assert run(result.model, feeds[:1])[0].shape == (4, 10)


def test_stage_accuracy_target(mb):
    model, feeds, tmp = mb
    calib = _npz_dir(tmp, feeds)
    table = json.loads((tmp / "table.json").read_text())
    table["amax"]["a1"] /= 50
    (tmp / "bad.json").write_text(json.dumps(table))
    held_out = _npz_dir(tmp, graphs.feeds(model, n=4, seed=7), "eval")  # disjoint from the calibration feeds (seed 1)
    cfg = QuantizeConfig(table=str(tmp / "bad.json"), calib=str(calib), eval=str(held_out), accuracy_target="cosine>=0.999", sensitivity_samples=8, clip_bounds=False, refine_ranges=False)
    result = quantize(model, cfg)
    acc = result.report["accuracy_target"]
    assert acc["met"] and "depthwise" in acc["kept_float"]
    assert "depthwise" in result.report["plan"]["kept_float"]["kept float for the accuracy target"]


def test_clip_bounds_restore_the_relu6_range(mb):
    model, feeds, tmp = mb
    table = json.loads((tmp / "table.json").read_text())
    table["amax"]["a1"] = 0.1
    table["details"] = {"tensors": {"a1": {"max": 5.0}}}
    (tmp / "clipped.json").write_text(json.dumps(table))
    result = quantize(model, QuantizeConfig(table=str(tmp / "clipped.json"), sensitivity_samples=0))
    assert "a1" in result.report["raised_to_clip_bound"]
    assert json.loads(result.artifacts["calibration.json"])["amax"]["a1"] == 5.0


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"target": "gpu"}, "target must be one of"),
        ({"method": "kl"}, "method must be one of"),
        ({"accuracy_target": "top1>=0.9"}, "needs held-out data"),
        ({"batch": 0}, "batch must be"),
        ({"cpu_weights": "int4"}, "cpu_weights"),
        ({"cpu_layer_rule": "some"}, "cpu_layer_rule"),
    ],
)
def test_config_errors(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        QuantizeConfig(**kwargs)


def test_config_round_trips_through_json():
    c = QuantizeConfig(target="cpu", include=("Conv",), accuracy_target="top1>=0.9", eval="e")
    assert QuantizeConfig.from_json(c.to_json()) == c


def test_stage_errors(mb):
    model, _, tmp = mb
    with pytest.raises(ConfigError, match="give calibration data"):
        quantize(model, QuantizeConfig())
    with pytest.raises(DataError, match="table not found"):
        quantize(model, QuantizeConfig(table=str(tmp / "missing.json")))
    with pytest.raises(ConfigError, match="nothing to quantize"):
        quantize(model, QuantizeConfig(table=str(tmp / "table.json"), include=("Relu",)))


def test_cli_quantize_both_targets_from_one_table(mb):
    model, feeds, tmp = mb
    calib = _npz_dir(tmp, feeds)
    out = tmp / "q.onnx"
    proc = cli("quantize", str(tmp / "model.onnx"), "--table", str(tmp / "table.json"), "--calib", str(calib), "-o", str(out), "--report", str(tmp / "r.json"), "--sensitivity-samples", "4")
    assert proc.returncode == 0, proc.stderr
    assert "7 layers quantized" in proc.stdout and "most sensitive" in proc.stdout
    assert trt_qdq_violations(load_model(out)) == []
    assert (tmp / "q.calib.json").is_file() and json.loads((tmp / "r.json").read_text())["target"] == "tensorrt"
    proc = cli("quantize", str(tmp / "model.onnx"), "--table", str(tmp / "q.calib.json"), "--target", "cpu", "-o", str(tmp / "c.onnx"), "--sensitivity-samples", "0")
    assert proc.returncode == 0, proc.stderr
    assert any(n.op_type == "QLinearConv" for n in load_model(tmp / "c.onnx").graph.node)


def test_cli_errors_are_one_line(mb):
    _, _, tmp = mb
    proc = cli("quantize", str(tmp / "model.onnx"), "-o", str(tmp / "q.onnx"))
    assert proc.returncode == 2 and "give calibration data" in proc.stderr and "Traceback" not in proc.stderr
    proc = cli("quantize", str(tmp / "model.onnx"), "--table", str(tmp / "table.json"), "--exclude", "nosuch", "-o", str(tmp / "q.onnx"))
    assert proc.returncode == 2 and "matches no node" in proc.stderr


def test_fashion_cnn_both_targets_keep_accuracy(tmp_path):
    """The shipped Fashion-MNIST CNN (real weights, real data): INT8 agrees with FP32."""
    zoo = pytest.importorskip("trtcompress.zoo")
    model = load_model(zoo.onnx_path("fashion_cnn"))
    x_cal, _ = zoo.fashion_mnist("train", limit=256)
    x_ev, y_ev = zoo.fashion_mnist("test", limit=512)
    plan = plan_quantization(model)
    table = calibrate_for_test(model, plan, [{"x": x_cal[i : i + 64]} for i in range(0, 256, 64)])
    (tmp_path / "t.json").write_text(table.to_json())
    ev = [{"x": x_ev[i : i + 128]} for i in range(0, 512, 128)]
    ref = np.concatenate(run(model, ev)).argmax(1)
    for target in ("tensorrt", "cpu"):
        result = quantize(model, QuantizeConfig(target=target, table=str(tmp_path / "t.json"), sensitivity_samples=0))
        if target == "tensorrt":
            assert trt_qdq_violations(result.model) == []
        got = np.concatenate(run(result.model, ev, optimize=target == "cpu")).argmax(1)
        assert np.mean(got == ref) >= 0.97, target
        assert abs(np.mean(got == y_ev) - np.mean(ref == y_ev)) <= 0.02, target


def test_stage_calibrates_with_the_calibration_module(mb):
    """The stage calibrates the plan's tensors itself from a data spec (an .npz directory)."""
    model, feeds, tmp = mb
    calib = _npz_dir(tmp, feeds)
    expected = json.loads((tmp / "table.json").read_text())["amax"]
    result = quantize(model, QuantizeConfig(calib=str(calib), method="max", sensitivity_samples=0, clip_bounds=False, progress=False))
    amax = json.loads(result.artifacts["calibration.json"])["amax"]
    assert set(amax) == set(expected)
    for t, v in expected.items():
        assert amax[t] == pytest.approx(v, rel=0.02), t
    assert trt_qdq_violations(result.model) == []


def test_stage_writes_a_tensorrt_cache_when_asked(mb):
    model, _, tmp = mb
    result = quantize(model, QuantizeConfig(table=str(tmp / "table.json"), sensitivity_samples=0, trt_version="10.3.0"))
    assert result.artifacts["calibration.cache"].startswith("TRT-100300-EntropyCalibration2")


def test_range_refinement_restores_a_range_that_hurts_its_layer(mb):
    model, feeds, tmp = mb
    calib = _npz_dir(tmp, feeds)
    table = json.loads((tmp / "table.json").read_text())
    table["amax"]["a1"] /= 50  # as if a method had clipped the depthwise input hard
    (tmp / "bad.json").write_text(json.dumps(table))
    result = quantize(model, QuantizeConfig(table=str(tmp / "bad.json"), calib=str(calib), sensitivity_samples=8, clip_bounds=False))
    assert [(c["tensor"], c["candidate"]) for c in result.report["refined_ranges"]] == [("a1", "max")]
    assert json.loads(result.artifacts["calibration.json"])["amax"]["a1"] == pytest.approx(table["details"]["tensors"]["a1"]["max"])


def test_calibration_batch_fits_the_activation_budget():
    from trtcompress.model_io import infer_shapes
    from trtcompress.stages.quantize import ACTIVATION_BUDGET, AUTO_BATCH_MAX, DEFAULT_BATCH, LARGE_BUDGET, calibration_batch

    def batch(model, **kw):
        return calibration_batch(model, plan_quantization(model).activation_tensors, QuantizeConfig(**kw))

    small = infer_shapes(graphs.mbconv())  # a few KB of calibrated tensors per sample: the cap
    assert batch(small) == AUTO_BATCH_MAX and batch(small, batch=3) == 3
    wide = infer_shapes(graphs.mbconv(c=256))  # about 2 MB per sample: the budget
    assert DEFAULT_BATCH < batch(wide) < AUTO_BATCH_MAX
    tensors = plan_quantization(wide).activation_tensors
    values = list(wide.graph.value_info) + list(wide.graph.input) + list(wide.graph.output)
    shapes = {v.name: [d.dim_value for d in v.type.tensor_type.shape.dim[1:]] for v in values}
    assert batch(wide) == ACTIVATION_BUDGET // sum(4 * int(np.prod(shapes[t])) for t in tensors)
    assert batch(infer_shapes(graphs.mbconv(c=1024))) == DEFAULT_BATCH  # 8 MB per sample: never below the old default
    assert batch(graphs.mbconv()) == DEFAULT_BATCH  # no shape inference: sizes unknown
    big = graphs.mbconv(c=64)
    big.graph.input[0].type.tensor_type.shape.dim[2].dim_value = big.graph.input[0].type.tensor_type.shape.dim[3].dim_value = 512
    big = infer_shapes(big)  # about 200 MB per sample: 8 at a time would hold 1.6 GB
    tensors = plan_quantization(big).activation_tensors
    values = list(big.graph.value_info) + list(big.graph.input) + list(big.graph.output)
    shapes = {v.name: [d.dim_value for d in v.type.tensor_type.shape.dim[1:]] for v in values}
    per_sample = sum(4 * int(np.prod(shapes[t])) for t in tensors)
    assert batch(big) == max(1, LARGE_BUDGET // per_sample) < DEFAULT_BATCH


def test_report_and_summary_name_the_layers_the_cpu_form_keeps_float(tmp_path):
    """The quantize report lists each conv the CPU form keeps float and why; the CLI summary says so;
    the TensorRT form still quantizes them; cpu_layer_rule "all" lowers them."""
    from test_lower_cpu import _float_output_convs

    from trtcompress.cli.quantize import format_report

    model = _float_output_convs()
    feeds = [{"x": np.random.default_rng(i).standard_normal((2, 64, 16, 16)).astype(np.float32)} for i in range(3)]
    calib = _npz_dir(tmp_path, feeds)
    cpu = quantize(model, QuantizeConfig(target="cpu", calib=str(calib), sensitivity_samples=0, progress=False))
    kept = {k["layer"]: k["why"] for k in cpu.report["cpu"]["kept_float"]}
    assert set(kept) == {"depthwise", "small"}
    assert "CPU form keeps float where INT8 does not pay" in format_report(cpu.report) and "depthwise, small" in format_report(cpu.report)
    trt = quantize(model, QuantizeConfig(target="tensorrt", calib=str(calib), sensitivity_samples=0))
    assert trt.report["plan"]["quantized_nodes"] == 3 and "keeps float" not in format_report(trt.report)
    every = quantize(model, QuantizeConfig(target="cpu", calib=str(calib), sensitivity_samples=0, cpu_layer_rule="all"))
    assert every.report["cpu"]["kept_float"] == [] and every.report["cpu"]["ops"]["ConvInteger"] == 2


def _budget(monkeypatch, **kw):
    import functools

    import trtcompress.stages.quantize as stage
    from trtcompress.quant.sensitivity import AnalysisBudget

    monkeypatch.setattr(stage, "AnalysisBudget", functools.partial(AnalysisBudget, **kw))


def test_an_analysis_over_budget_runs_on_the_samples_a_smaller_keeper_keeps(mb, monkeypatch):
    """A model whose analysis would cost more than its share of calibration is analysed on fewer
    samples: the first in digest order, so the ranges, errors and model are exactly those of
    keeping that many samples, whatever the data's order. The report says how many."""
    model, feeds, tmp = mb
    calib = _npz_dir(tmp, feeds)
    with monkeypatch.context() as m:
        _budget(m, floor_macs=0, min_samples=3)
        cut = quantize(model, QuantizeConfig(target="tensorrt", calib=str(calib), sensitivity_samples=8, sensitivity_share=1e-9))
    assert cut.report["sensitivity"]["samples"] == 3 and cut.report["sensitivity"]["of"] == 8
    three = quantize(model, QuantizeConfig(target="tensorrt", calib=str(calib), sensitivity_samples=3))
    assert three.report["sensitivity"]["samples"] == 3  # a small model: every kept sample
    assert cut.report["layer_error"] == three.report["layer_error"]
    assert cut.report["refined_ranges"] == three.report["refined_ranges"]
    assert cut.model.SerializeToString() == three.model.SerializeToString()
    every = quantize(model, QuantizeConfig(target="tensorrt", calib=str(calib), sensitivity_samples=8, sensitivity_share=0))
    assert every.report["sensitivity"]["samples"] == 8


def test_the_analysis_in_small_calls_measures_what_one_call_does(mb, monkeypatch):
    """Past the per-call byte budget the samples run a few at a time (bounded memory): the same
    errors and range choices as one call."""
    model, feeds, tmp = mb
    calib = _npz_dir(tmp, feeds)
    config = QuantizeConfig(target="tensorrt", calib=str(calib), sensitivity_samples=8)
    whole = quantize(model, config)
    with monkeypatch.context() as m:
        _budget(m, bytes_per_call=1)
        split = quantize(model, config)
    assert whole.report["sensitivity"]["batch"] is None and split.report["sensitivity"]["batch"] == 1
    assert split.report["refined_ranges"] == whole.report["refined_ranges"]
    for a, b in zip(split.report["layer_error"], whole.report["layer_error"]):
        assert a["node"] == b["node"] and a["local_sqnr_db"] == pytest.approx(b["local_sqnr_db"], abs=0.02)
        assert a["cumulative_sqnr_db"] == pytest.approx(b["cumulative_sqnr_db"], abs=0.02)
