"""trtcompress sweep --ray on a local Ray cluster started in this process: each variant is a Ray task
with its resource request (one CPU; one GPU for a variant that builds a TensorRT engine, refused
up front by a cluster without one), gathered into the same sweep.json and page as a local sweep,
and resumed on Ray skipping the variant that finished."""
from __future__ import annotations

import os

import pytest

ray = pytest.importorskip("ray")

from sweep_support import DATA, json_main as _json_main  # noqa: E402

from trtcompress.job import CompressConfig  # noqa: E402
from trtcompress.sweep.executors import needs_gpu  # noqa: E402
from trtcompress.zoo import onnx_path  # noqa: E402


@pytest.fixture(scope="module")
def cluster():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


def _sweep(runs, *more):
    return _json_main(["sweep", str(onnx_path("fashion_cnn")), "--stages", "quantize", "--set", "target=cpu", "--data", str(DATA),
                       "--calib-from-data", "split", "--limit", "64", "--runs-dir", str(runs), "--name", "onray", "--ray",
                       "--batch-sizes", "1", "--iterations", "10", "--rounds", "2", *more])


def test_variants_are_ray_tasks_and_resume(cluster, tmp_path):
    code, first = _sweep(tmp_path, "--set", "calibration=entropy")
    assert code == 0 and first["executor"] == {"kind": "ray", "address": "local"}
    code, data = _sweep(tmp_path, "--set", "calibration=entropy,max", "--resume")
    assert code == 0 and data["status"] == "completed"
    entropy, top = data["variants"]
    assert entropy["name"] == "target-cpu_calibration-entropy" and entropy["reused"] is True  # finished on Ray before: skipped
    assert top["name"] == "target-cpu_calibration-max" and top["reused"] is False
    assert top["ran_on"]["ray"] == {"cpus": 1, "gpus": 0} and top["ran_on"]["pid"] != os.getpid()
    for v in data["variants"]:
        assert (tmp_path / "onray" / v["name"] / "report.json").is_file() and v["accuracy"] is not None
    assert data["fronts"]["latency"] and (tmp_path / "onray" / "sweep.html").is_file()


def test_engine_builds_ask_for_a_gpu(cluster, tmp_path):
    assert needs_gpu(CompressConfig(model="m.onnx", target_trt="10.3")) and needs_gpu(CompressConfig(model="m.onnx", backend="trt"))
    assert not needs_gpu(CompressConfig(model="m.onnx"))
    code, data = _sweep(tmp_path, "--set", "target_trt=10.3")
    assert code == 2 and "asks Ray for one GPU" in data["error"]["message"] and "has 0" in data["error"]["message"]
    assert not (tmp_path / "onray").exists()  # refused before any variant ran: nothing left behind
