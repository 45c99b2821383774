"""Data-parallel distillation without Ray: the trainer as DDP replicas in a gloo process group.

One replica is the single-process trainer bit for bit (also resuming a single-process checkpoint);
two replicas (two processes) train on slices of the same batches, with the gradient of the whole
batch's mean: the single-process weights up to float rounding; an interrupted two-replica run
resumes to the uninterrupted one's weights bit for bit.
"""
from __future__ import annotations

import os
import socket

import pytest

torch = pytest.importorskip("torch")
dist = pytest.importorskip("torch.distributed")
pytest.importorskip("sklearn")
if not dist.is_available() or not dist.is_gloo_available():
    pytest.skip("needs torch.distributed with gloo", allow_module_level=True)

from trtcompress.errors import ConfigError  # noqa: E402
from trtcompress.finetune import FinetuneConfig, finetune, open_training_data  # noqa: E402
from trtcompress.finetune.parallel import Replica  # noqa: E402
from crash_data import Crash, CrashAfter  # noqa: E402


def _mlp(dropout: float):
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 64), torch.nn.ReLU(), torch.nn.Dropout(dropout), torch.nn.Linear(64, 10))


def _teacher():
    """A teacher that differs from the students (trained briefly on the labels)."""
    model = _mlp(0.0)
    opt = torch.optim.Adam(model.parameters(), 3e-3)
    for x, y in open_training_data("digits:train", 64):
        loss = torch.nn.functional.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model.eval()


def _equal(a, b) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize("world,n", [(1, 7), (2, 1), (2, 63), (3, 7), (4, 64)])
def test_slices_cover_the_batch_and_weigh_to_its_mean(world, n):
    x = torch.arange(n)
    parts = [Replica(r, world).split(x, x) for r in range(world)]
    covered = [Replica(r, world).bounds(n) for r in range(world)]
    assert covered[0][0] == 0 and covered[-1][1] == n and all(a[1] == b[0] for a, b in zip(covered, covered[1:]))
    assert covered[0][1] > 0  # rank 0 always trains on something
    # sum over ranks of weight * (mean over the slice) / world == mean over the batch
    assert sum(w * float(xs.float().mean()) for xs, _, w in parts) / world == pytest.approx(float(x.float().mean()))
    assert sum(w for _, _, w in parts) == pytest.approx(world)
    assert all(len(xs) >= 1 for xs, _, _ in parts)  # every rank runs forward and backward (DDP needs all)


def test_a_built_in_set_reads_each_workers_share_as_the_whole_batches_split():
    """``fashion-mnist``/``digits`` gather only a worker's samples; the same as slicing whole batches."""
    data = open_training_data("digits:train", 63)
    for world in (1, 2, 3):
        for rank in range(world):
            r = Replica(rank, world)
            torch.manual_seed(5)
            whole = [r.split(x, y) for x, y in data]
            torch.manual_seed(5)
            own = list(r.shard(data))
            assert len(own) == len(whole) == 23
            assert all(torch.equal(a[0], b[0]) and torch.equal(a[1], b[1]) and a[2] == b[2] for a, b in zip(own, whole))


@pytest.fixture
def one_replica(tmp_path):
    dist.init_process_group("gloo", store=dist.FileStore(str(tmp_path / "store"), 1), rank=0, world_size=1)
    yield Replica.current()
    dist.destroy_process_group()


def test_one_replica_is_the_single_process_trainer_bit_for_bit(one_replica, tmp_path):
    teacher, data = _teacher(), open_training_data("digits:train", 64)
    cfg = FinetuneConfig(steps=30, progress=False, seed=3, schedule="cosine", history_every=7)
    local = finetune(_mlp(0.1), teacher, data, cfg)
    ddp = finetune(_mlp(0.1), teacher, data, cfg, replica=one_replica)
    assert _equal(local.student.state_dict(), ddp.student.state_dict())
    assert ddp.report["loss_history"] == local.report["loss_history"] and ddp.report["final_loss"] == local.report["final_loss"]

    # a single-process checkpoint resumes under one replica to the same weights
    ck = tmp_path / "ck"
    with pytest.raises(Crash):
        finetune(_mlp(0.1), teacher, CrashAfter(data, 11), cfg.replace(checkpoint_dir=str(ck), checkpoint_every=4))
    resumed = finetune(_mlp(0.1), teacher, data, cfg.replace(checkpoint_dir=str(ck), checkpoint_every=4, resume=True), replica=one_replica)
    assert _equal(resumed.student.state_dict(), local.student.state_dict())


def test_a_checkpoint_of_another_worker_count_is_refused(one_replica, tmp_path):
    teacher, data = _teacher(), open_training_data("digits:train", 64)
    cfg = FinetuneConfig(steps=3, progress=False, checkpoint_dir=str(tmp_path))
    finetune(_mlp(0.0), teacher, data, cfg, replica=one_replica)
    state = torch.load(tmp_path / "last.pt", weights_only=False)
    assert state["world"] == 1 and len(state["worker_rng"]) == 1
    state["world"] = 2
    torch.save(state, tmp_path / "last.pt")
    with pytest.raises(ConfigError, match="2 worker.*this run has 1"):
        finetune(_mlp(0.0), teacher, data, cfg.replace(resume=True, steps=5), replica=one_replica)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _two_replicas(rank: int, port: int, folder: str) -> None:
    """One of two processes: an uninterrupted run, an interrupted one and its resume."""
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=2)
    replica = Replica.current()
    teacher = torch.load(os.path.join(folder, "teacher.pt"), weights_only=False)
    data = open_training_data("digits:train", 63)  # 22 batches of 63 (slices 32 + 31), then 14
    out = {}
    for dropout, name in ((0.0, "plain"), (0.1, "dropout")):
        cfg = FinetuneConfig(steps=16, progress=False, seed=3, schedule="cosine")
        out[name] = finetune(_mlp(dropout), teacher, data, cfg, replica=replica).student.state_dict()
    ck = os.path.join(folder, "ck")
    cfg = FinetuneConfig(steps=16, progress=False, seed=3, schedule="cosine", checkpoint_dir=ck, checkpoint_every=4)
    try:
        finetune(_mlp(0.1), teacher, CrashAfter(data, 11), cfg, replica=replica)
    except Crash:
        pass
    out["resumed"] = finetune(_mlp(0.1), teacher, data, cfg.replace(resume=True), replica=replica).student.state_dict()
    torch.save(out, os.path.join(folder, f"rank{rank}.pt"))
    dist.destroy_process_group()


def test_two_replicas_train_on_the_whole_batch_and_resume_bit_for_bit(tmp_path):
    mp = pytest.importorskip("torch.multiprocessing")
    teacher = _teacher()
    torch.save(teacher, tmp_path / "teacher.pt")
    mp.spawn(_two_replicas, args=(_free_port(), str(tmp_path)), nprocs=2, join=True)
    r0, r1 = (torch.load(tmp_path / f"rank{r}.pt", weights_only=False) for r in (0, 1))
    for k in r0:
        assert _equal(r0[k], r1[k])  # DDP keeps the replicas identical
    # without dropout the two replicas' sum is the single-process gradient, in another order
    data = open_training_data("digits:train", 63)
    local = finetune(_mlp(0.0), teacher, data, FinetuneConfig(steps=16, progress=False, seed=3, schedule="cosine")).student.state_dict()
    for k in local:
        torch.testing.assert_close(r0["plain"][k], local[k], rtol=1e-4, atol=1e-5)
    # interrupted at batch 11, resumed from the step-8 checkpoint: the uninterrupted run's weights
    assert _equal(r0["resumed"], r0["dropout"])
    # the check can fail: the run with dropout is another run
    assert not _equal(r0["dropout"], r0["plain"])
