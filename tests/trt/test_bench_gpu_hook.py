"""How ``bench`` takes GPU compute time from runners that offer it (the TensorRT runner does),
checked on the CPU with an ONNX Runtime runner that times its own inferences as its 'GPU' time."""
from __future__ import annotations

import time

from polygraphy.backend.onnxrt import OnnxrtRunner

from trt_graphs import conv_net
from trtcompress.benchmark import BenchConfig, bench
from trtcompress.errors import MissingDependencyError
from trtcompress.runners import register_backend
from trtcompress.runners.onnxrt import make_session


class _SelfTimed(OnnxrtRunner):
    missing = False

    def gpu_latency_ms(self, feed, iterations, warmup=10, cuda_graph=False):
        if self.missing:
            raise MissingDependencyError("no CUDA runtime for GPU buffers; run: pip install 'trtcompress[trt]'")
        times = []
        for _ in range(iterations):
            t = time.perf_counter()
            self.infer(feed, check_inputs=False)
            times.append((time.perf_counter() - t) * 1e3)
        return times, {"cuda_graph": cuda_graph, "gpu_memory_used_bytes": 0}


@register_backend("test-self-timed")
def _self_timed(model_path, options):
    return _SelfTimed(lambda: make_session(model_path, options), name=model_path)


def test_gpu_time_is_reported_beside_end_to_end_and_ratios_use_it(tmp_path):
    small, big = tmp_path / "small.onnx", tmp_path / "big.onnx"
    conv_net(small, c=8)
    conv_net(big, c=64)
    result = bench([small, big], BenchConfig(batch_sizes=(4,), iterations=6, rounds=2, warmup=1, cuda_graph=True), backend="test-self-timed")
    per = result.results[4]
    for stats in per.values():
        assert stats["gpu"]["iterations"] == 6 and stats["gpu"]["cuda_graph"] is True and stats["gpu"]["p50_ms"] > 0
    s, b = per[str(small)], per[str(big)]
    assert result.ratios[4][str(big)] == s["gpu"]["p50_ms"] / b["gpu"]["p50_ms"]


def test_without_a_gpu_runtime_bench_keeps_end_to_end_time(tmp_path, monkeypatch):
    model = tmp_path / "m.onnx"
    conv_net(model, c=8)
    monkeypatch.setattr(_SelfTimed, "missing", True)
    lines = []
    result = bench([model], BenchConfig(batch_sizes=(2,), iterations=4, rounds=2, warmup=1), backend="test-self-timed", log=lines.append)
    stats = result.results[2][str(model)]
    assert "gpu" not in stats and stats["iterations"] == 4
    assert sum("no GPU compute time" in l for l in lines) == 1
