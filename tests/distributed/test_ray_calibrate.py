"""Calibration on a local Ray cluster started in this process: the written model, table and cache
are a single-process run's, byte for byte; a worker killed mid-shard is retried and counts its
samples once; a task's data error reaches the user as the one-line error it is without Ray."""
from __future__ import annotations

import os
import textwrap

import numpy as np
import pytest

ray = pytest.importorskip("ray")

from ray_support import fashion_cnn, fashion_files, written  # noqa: E402

from trtcompress.errors import DataError  # noqa: E402
from trtcompress.stages.quantize import QuantizeConfig  # noqa: E402


@pytest.fixture(scope="module")
def cluster():
    """One local cluster for the module (start-up takes seconds on 2 cores)."""
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)  # a new cluster, never another process's
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def calib(tmp_path_factory):
    return fashion_files(tmp_path_factory.mktemp("calib"), [150, 70, 100])


@pytest.mark.parametrize("case", [
    dict(target="tensorrt", trt_version="10.3.0", ray_tasks=3),  # shards of 128, 128, 64: files cut mid-way
    dict(target="cpu", method="percentile", limit=250, batch=16, ray_tasks=4),
])
def test_ray_writes_the_single_process_files(cluster, calib, case):
    model = fashion_cnn()
    tasks = case.pop("ray_tasks")
    config = QuantizeConfig(calib=str(calib), progress=False, **case)
    local, local_report = written(model, config)
    dist, report = written(model, config.replace(ray="local", ray_tasks=tasks))
    assert dist == local  # model, table and cache bytes
    # the sensitivity analysis and range refinement ran as a Ray task: the same choices and errors
    assert report["layer_error"] == local_report["layer_error"] and len(report["layer_error"]) >= 4
    assert report["refined_ranges"] == local_report["refined_ranges"]
    assert report["sensitivity_ray"]["pid"] != os.getpid()
    run = report["calibration_ray"]
    assert run["shards"] == tasks and run["samples"] == case.get("limit", 320)
    covered = [(t["start"], t["stop"]) for t in run["tasks"]]
    assert covered[0][0] == 0 and covered[-1][1] == run["samples"] and all(a[1] == b[0] for a, b in zip(covered, covered[1:]))


def test_a_killed_worker_is_retried_and_counts_its_samples_once(cluster, tmp_path):
    """The user's reader (module:file.py:function, read in the task) kills its worker process the
    first time a task runs it; Ray reruns that shard and the result is still the local one."""
    x = np.load(sorted(fashion_files(tmp_path / "data", [200]).iterdir())[0])["x"]
    np.save(tmp_path / "x.npy", x)
    reader = tmp_path / "reader.py"
    reader.write_text(textwrap.dedent(f"""
        import os
        from pathlib import Path
        import numpy as np

        ARMED, FIRED = Path({str(tmp_path / "armed")!r}), Path({str(tmp_path / "fired")!r})

        def feeds():
            import ray
            if ARMED.exists() and ray.is_initialized() and ray.get_runtime_context().get_task_id() and not FIRED.exists():
                FIRED.touch()
                os._exit(1)  # the worker process dies, as on a lost node
            x = np.load({str(tmp_path / "x.npy")!r})
            for k in range(0, len(x), 25):
                yield {{"x": x[k : k + 25]}}
    """))
    model = fashion_cnn()
    config = QuantizeConfig(calib=f"module:{reader}:feeds", progress=False, trt_version="10.3.0", batch=32)
    local, _ = written(model, config)
    (tmp_path / "armed").touch()
    dist, report = written(model, config.replace(ray="local", ray_tasks=2))
    assert (tmp_path / "fired").exists()  # a worker did die
    assert dist == local
    assert report["calibration_samples"] == 200 and [t["stop"] - t["start"] for t in report["calibration_ray"]["tasks"]] == [96, 104]


def test_bad_data_in_a_task_is_the_users_one_line_error(cluster, calib, tmp_path):
    bad = fashion_files(tmp_path / "bad", [40, 40])
    x = np.load(bad / "part001.npz")["x"]
    x[3, 0, 0, 0] = np.nan
    np.savez(bad / "part001.npz", x=x)
    with pytest.raises(DataError, match="contains NaN"):
        written(fashion_cnn(), QuantizeConfig(calib=str(bad), progress=False, ray="local", ray_tasks=2, batch=8))
