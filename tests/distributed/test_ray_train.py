"""Distillation on Ray Train (torch DDP, gloo) on a local cluster started in this process.

One worker under Ray gives the single-process trainer's weights bit for bit, for ``finetune`` and
for the ``finetune`` stage; two workers whose group loses a worker mid-run restart from the last
checkpoint and end with the uninterrupted two-worker run's weights bit for bit. Without the extra,
``--ray`` is one line naming it, before any work. A Ray Train run starts its controller and worker
processes (about 30 s a run on 2 loaded cores): those tests are slow.
"""
from __future__ import annotations

import importlib.util
import json
import logging
import sys
import textwrap

import pytest

torch = pytest.importorskip("torch")

from trtcompress.cli.main import main  # noqa: E402
from trtcompress.errors import MissingDependencyError  # noqa: E402
from trtcompress.finetune import FinetuneConfig, finetune  # noqa: E402
from trtcompress.finetune.jobs import SpecJob  # noqa: E402
from trtcompress.stages.finetune import FinetuneStageConfig  # noqa: E402

DATA = "fashion-mnist:train:512"  # 16 batches of 32
CONFIG = FinetuneConfig(steps=12, batch_size=32, seed=1, threads=1, checkpoint_every=4, history_every=4, progress=False)


def _equal(a, b) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize("missing", ["ray", "pyarrow"])
def test_without_the_extra_finetune_ray_is_refused_before_any_work(monkeypatch, tmp_path, capsys, missing):
    monkeypatch.setitem(sys.modules, missing, None)  # as if not installed
    out = tmp_path / "s.onnx"
    code = main(["finetune", "--teacher", "zoo:fashion_cnn", "--transform", "2to4", "--data", DATA, "--ray", "--workers", "2", "-o", str(out)])
    err = capsys.readouterr().err.strip()
    assert code == 2 and err.count("\n") == 0 and "trtcompress[ray]" in err and missing in err
    assert not out.exists()
    with pytest.raises(MissingDependencyError, match=r"trtcompress\[ray\]"):
        FinetuneStageConfig(ray="local")


def test_ray_train_flags_without_ray_and_a_bad_worker_count_are_one_line_errors(tmp_path, capsys):
    base = ["finetune", "--teacher", "zoo:fashion_cnn", "--transform", "2to4", "--data", DATA, "-o", str(tmp_path / "s.onnx")]
    assert main([*base, "--workers", "2"]) == 2
    assert "give --ray [ADDRESS] too" in capsys.readouterr().err
    if importlib.util.find_spec("ray") is not None and importlib.util.find_spec("pyarrow") is not None:
        assert main([*base, "--ray", "--workers", "0"]) == 2
        assert "at least 1, got 0" in capsys.readouterr().err
    assert not (tmp_path / "s.onnx").exists()


def test_compress_hands_ray_to_the_finetune_stage():
    if any(importlib.util.find_spec(m) is None for m in ("ray", "pandas", "pyarrow", "fsspec")):
        pytest.skip("needs trtcompress[ray] (the config refuses --ray without it)")
    from trtcompress.cli.compress import build_config
    from trtcompress.cli.main import build_parser
    from trtcompress.job import _with_shared_data

    args = build_parser("compress").parse_args(["compress", "trtcompress.zoo:fashion_cnn", "--stages", "sparsify,finetune", "--calib", "c", "--ray", "auto"])
    config = build_config(args)
    stage = _with_shared_data(config.stages[1], config)
    assert stage.ray == "auto" and stage.ray_workers == 2


@pytest.fixture(scope="module")
def cluster():
    ray = pytest.importorskip("ray")
    pytest.importorskip("ray.train.torch")
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level=logging.WARNING)  # never another process's cluster
    yield ray
    ray.shutdown()


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_one_worker_is_the_local_trainer_bit_for_bit(cluster):
    from trtcompress.distributed.ray_train import RayTrainOptions, ray_finetune

    job = SpecJob(teacher="zoo:fashion_cnn", data=DATA, batch_size=CONFIG.batch_size, transform="2to4")
    local = job.build()
    want = finetune(local.student, local.teacher, local.data, CONFIG)
    got = ray_finetune(job, job.build().student, CONFIG, RayTrainOptions(workers=1))
    assert _equal(got.student.state_dict(), want.student.state_dict())
    assert got.report["loss_history"] == want.report["loss_history"] and got.steps == 12
    assert got.report["ray"]["workers"] == 1


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_two_workers_restarted_after_a_worker_dies_resume_bit_for_bit(cluster, tmp_path):
    """``finetune --ray --workers 2`` runs uninterrupted; the same run whose worker 1 exits at batch
    10 (its data factory kills its process, once) restarts and resumes from the step-8 checkpoint."""
    from trtcompress.distributed.ray_train import RayTrainOptions, ray_finetune

    whole = tmp_path / "whole"
    code = main(["--json", "finetune", "--teacher", "zoo:fashion_cnn", "--transform", "2to4", "--data", DATA, "--ray", "--workers", "2",
                 "--steps", "12", "--batch-size", "32", "--seed", "1", "--threads", "1", "--checkpoint-every", "4", "--history-every", "4", "--no-progress",
                 "--checkpoint-dir", str(whole), "-o", str(tmp_path / "student.onnx")])
    assert code == 0
    report = json.loads((tmp_path / "student.json").read_text())
    assert report["finetune"]["ray"]["workers"] == 2 and report["finetune"]["steps"] == 12
    uninterrupted = torch.load(whole / "last.pt", weights_only=False)
    assert uninterrupted["world"] == 2 and len(uninterrupted["worker_rng"]) == 2

    killer = tmp_path / "killer.py"
    killer.write_text(textwrap.dedent(f"""
        import os
        from pathlib import Path
        import torch.distributed as dist
        from trtcompress.finetune.data import open_training_data

        FIRED = Path({str(tmp_path / "fired")!r})

        class Killer:
            def __init__(self):
                self.data = open_training_data({DATA!r}, 32)

            def __len__(self):
                return len(self.data)

            def __iter__(self):
                for i, batch in enumerate(self.data):
                    if i == 10 and dist.get_rank() == 1 and not FIRED.exists():
                        FIRED.touch()
                        os._exit(1)
                    yield batch

        def make():
            return Killer()
    """))
    job = SpecJob(teacher="zoo:fashion_cnn", data=f"{killer}:make", batch_size=CONFIG.batch_size, transform="2to4")
    resumed = ray_finetune(job, job.build().student, CONFIG.replace(checkpoint_dir=str(tmp_path / "killed")),
                           RayTrainOptions(workers=2, max_failures=1))
    assert (tmp_path / "fired").exists()  # the worker did die
    assert _equal(resumed.student.state_dict(), uninterrupted["student"])
    assert resumed.report["loss_history"] == uninterrupted["history"]


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_the_finetune_stage_on_one_ray_worker_writes_the_local_model(cluster):
    from trtcompress.model_io import load_model
    from trtcompress.stages.finetune import finetune as stage
    from trtcompress.stages.sparsify import SparsifyConfig, sparsify
    from trtcompress.zoo import onnx_path

    sparse = sparsify(load_model(onnx_path("fashion_cnn")), SparsifyConfig()).model
    config = FinetuneStageConfig(torch_model="trtcompress.zoo:fashion_cnn", train=("fashion-mnist:train:256",), steps=6, batch_size=32,
                                 norm_samples=64, threads=1, progress=False, exporter="torchscript")
    local = stage(sparse, config)
    dist = stage(sparse, config.replace(ray="local", ray_workers=1))
    assert dist.model.SerializeToString() == local.model.SerializeToString()
    assert dist.report["loss_curve"] == local.report["loss_curve"] and dist.report["ray"]["workers"] == 1


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_a_workers_data_error_reaches_the_user_as_its_one_line_error(cluster, tmp_path):
    """Training data that is wrong only where the workers read it (float labels): the trainer's
    DataError, as a local run raises it, not Ray's wrapper."""
    from trtcompress.distributed.ray_train import RayTrainOptions, ray_finetune
    from trtcompress.errors import DataError

    bad = tmp_path / "bad.py"
    bad.write_text(textwrap.dedent(f"""
        import torch
        import torch.distributed as dist
        from trtcompress.finetune.data import open_training_data

        def make():
            if dist.is_initialized():
                return [(torch.zeros(4, 1, 28, 28), torch.zeros(4))]
            return open_training_data({DATA!r}, 32)
    """))
    job = SpecJob(teacher="zoo:fashion_cnn", data=f"{bad}:make", batch_size=CONFIG.batch_size, transform="2to4")
    with pytest.raises(DataError, match="labels of batch 0 are torch.float32"):
        ray_finetune(job, job.build().student, CONFIG, RayTrainOptions(workers=1))
