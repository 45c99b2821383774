"""Engines built, run, compared and benchmarked on TensorRT and a GPU (skipped without them)."""
from __future__ import annotations

import json

import numpy as np
import pytest

from trt_graphs import conv_net
from trtcompress.benchmark import BenchConfig, bench
from trtcompress.comparison import CompareConfig, compare
from trtcompress.data.base import model_inputs
from trtcompress.data.readers import ReaderOptions, open_source
from trtcompress.errors import ModelError
from trtcompress.runners import make_runner
from trtcompress.trt.build import build_engine
from trtcompress.trt.config import BuildConfig
from trtcompress.trt.sidecar import sidecar_path

pytestmark = pytest.mark.trt


@pytest.fixture(scope="module")
def engines(tmp_path_factory):
    d = tmp_path_factory.mktemp("engines")
    fp32, qdq = d / "fp32.onnx", d / "qdq24.onnx"
    conv_net(fp32)
    conv_net(qdq, qdq=True, sparse=True)
    return {
        "fp32_onnx": fp32,
        "qdq_onnx": qdq,
        "fp32": build_engine(fp32, d / "fp32.engine", BuildConfig(timing_cache=str(d / "timing.cache"))),
        "fp16": build_engine(fp32, d / "fp16.engine", BuildConfig(fp16=True)),
        "int8": build_engine(qdq, d / "int8.engine", BuildConfig()),
    }


def test_engine_and_sidecar_are_written(engines):
    r = engines["fp32"]
    assert r.engine_path.stat().st_size > 0
    side = json.loads(sidecar_path(r.engine_path).read_text())
    assert side["tensorrt_version"] == r.tensorrt_version and side["gpu"]["compute_capability"]
    assert side["profiles"] == [{"x": {"min": [1, 3, 16, 16], "opt": [8, 3, 16, 16], "max": [32, 3, 16, 16]}}]
    assert len(side["source_onnx"]["sha256"]) == 64
    assert r.report["layers"] and all(l["precision"] for l in r.report["layers"] if l["type"] not in ("Reformat", "Shuffle"))


def test_int8_engine_runs_int8_layers_and_reports_sparsity(engines):
    r = engines["int8"]
    assert "int8" in r.report["precision_counts"], r.report["precision_counts"]
    assert not [w for w in r.report["warnings"] if "INT8 was requested" in w]
    assert r.plan.sparse_weights and set(r.report["sparsity"]) == {"eligible", "picked"}


@pytest.mark.parametrize("batch", [1, 32])
def test_dynamic_batch_engine_matches_onnxruntime(engines, batch):
    src = open_source("random:2", model_inputs(engines["fp32_onnx"]), ReaderOptions(batch_size=batch))
    result = compare(engines["fp32_onnx"], engines["fp32"].engine_path, src, CompareConfig(atol=1e-3, rtol=1e-3))
    assert result.passed, result.failures


def test_fp16_and_int8_engines_stay_close(engines):
    src = open_source("random:4", model_inputs(engines["fp32_onnx"]), ReaderOptions(batch_size=8))
    assert compare(engines["fp32_onnx"], engines["fp16"].engine_path, src, CompareConfig(min_cosine=0.999)).passed
    src = open_source("random:4", model_inputs(engines["qdq_onnx"]), ReaderOptions(batch_size=8))
    assert compare(engines["qdq_onnx"], engines["int8"].engine_path, src, CompareConfig(min_cosine=0.99)).passed


def test_onnx_on_the_trt_backend_builds_with_profiles(engines):
    x = np.random.default_rng(0).standard_normal((32, 3, 16, 16)).astype(np.float32)
    with make_runner(engines["fp32_onnx"], "trt") as r, make_runner(engines["fp32_onnx"], "onnxrt") as o:
        np.testing.assert_allclose(r.infer({"x": x})["logits"], o.infer({"x": x})["logits"], rtol=1e-3, atol=1e-3)


def test_engine_from_another_tensorrt_is_refused_before_loading(engines, tmp_path):
    engine = tmp_path / "copy.engine"
    engine.write_bytes(engines["fp32"].engine_path.read_bytes())
    side = json.loads(sidecar_path(engines["fp32"].engine_path).read_text())
    side["tensorrt_version"] = "8.5.1"
    sidecar_path(engine).write_text(json.dumps(side))
    with pytest.raises(ModelError, match="built with TensorRT 8.5.1"):
        make_runner(engine, "trt")


@pytest.mark.parametrize("cuda_graph", [False, True])
def test_bench_reports_gpu_time_beside_end_to_end(engines, cuda_graph):
    paths = [engines["fp32"].engine_path, engines["int8"].engine_path]
    result = bench(paths, BenchConfig(batch_sizes=(1, 32), iterations=20, rounds=2, warmup=3, cuda_graph=cuda_graph), backend="trt")
    for batch in (1, 32):
        for stats in result.results[batch].values():
            gpu = stats["gpu"]
            assert gpu["iterations"] == 20 and 0 < gpu["p50_ms"] <= stats["p50_ms"] * 1.5
            assert gpu["cuda_graph"] is cuda_graph and gpu["throughput_per_s"] > 0
