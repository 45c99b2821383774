"""A simulated two-node Ray cluster (ray.cluster_utils.Cluster): one node with a CPU, one with a
CPU and a GPU (declared: Ray schedules on the resources a node says it has). A variant that builds
a TensorRT engine asks for the GPU and runs on that node; the others run anywhere.

Marked slow: starting the head and the worker node in the test process takes 30-60 s on the 2
shared cores."""
from __future__ import annotations

import json

import pytest

ray = pytest.importorskip("ray")

from ray.cluster_utils import Cluster  # noqa: E402
from sweep_support import DATA, json_main  # noqa: E402

from trtcompress.zoo import onnx_path  # noqa: E402

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def two_nodes():
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "include_dashboard": False})
    gpu_node = cluster.add_node(num_cpus=1, num_gpus=1)
    cluster.wait_for_nodes()
    ray.init(address=cluster.address, log_to_driver=False)
    yield gpu_node.node_id
    ray.shutdown()
    cluster.shutdown()


def test_engine_builds_run_on_the_gpu_node(two_nodes, tmp_path):
    grid = tmp_path / "grid.json"
    grid.write_text(json.dumps({"base": {"stages": [{"stage": "quantize"}]}, "grid": {"target_trt": ["10.3", None], "calibration": ["max"]}}))
    code, data = json_main(["sweep", str(onnx_path("fashion_cnn")), "--grid", str(grid), "--data", str(DATA), "--calib-from-data", "split",
                            "--limit", "64", "--runs-dir", str(tmp_path), "--ray", "--no-bench"])
    assert code == 0, data
    trt, cpu = data["variants"]
    assert trt["name"] == "target_trt-10.3_calibration-max" and cpu["name"] == "target_trt-off_calibration-max"
    assert trt["ran_on"]["ray"] == {"cpus": 1, "gpus": 1} and trt["ran_on"]["node"] == two_nodes
    assert cpu["ran_on"]["ray"] == {"cpus": 1, "gpus": 0}
    report = json.loads((tmp_path / "grid" / trt["name"] / "report.json").read_text())
    assert report["tensorrt"]["version"].startswith("10.3") and "engine" in report["tensorrt"]  # built, or the plan where TensorRT is absent
