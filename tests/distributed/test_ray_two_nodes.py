"""A simulated two-node Ray cluster (ray.cluster_utils.Cluster, one CPU a node): the shards run on
both nodes and the written files are a single-process run's, byte for byte.

Marked slow: starting a second cluster (head and worker node) in the test process takes 30-60 s
on the 2 shared cores, on top of the local cluster of test_ray_calibrate.py."""
from __future__ import annotations

import pytest

ray = pytest.importorskip("ray")

from ray.cluster_utils import Cluster  # noqa: E402
from ray_support import fashion_cnn, fashion_files, written  # noqa: E402

from trtcompress.stages.quantize import QuantizeConfig  # noqa: E402

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def two_nodes():
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "include_dashboard": False})
    cluster.add_node(num_cpus=1)
    cluster.wait_for_nodes()
    ray.init(address=cluster.address, log_to_driver=False)
    yield cluster
    ray.shutdown()
    cluster.shutdown()


def test_shards_on_two_nodes_give_the_single_process_files(two_nodes, tmp_path):
    calib = fashion_files(tmp_path / "calib", [100, 100, 56])
    model = fashion_cnn()
    config = QuantizeConfig(calib=str(calib), progress=False, trt_version="10.3.0", batch=32)
    local, _ = written(model, config)
    dist, report = written(model, config.replace(ray="local", ray_tasks=4))
    assert dist == local
    run = report["calibration_ray"]
    assert run["cluster_cpus"] == 2 and run["shards"] == 4 and run["nodes"] == 2  # one CPU a node: both ran shards
