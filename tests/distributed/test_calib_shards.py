"""Shards of calibration data (no Ray needed): ranges on whole batches that cover the data once,
read without the items before them, whose kept samples merge into one pass's; --ray without the
extra is one line naming it."""
from __future__ import annotations

import sys

import numpy as np
import pytest

from ray_support import fashion_cnn, fashion_files

from trtcompress.cli.main import build_parser, main
from trtcompress.data.base import SampleKeeper, model_inputs
from trtcompress.data.options import DataOptions, open_data
from trtcompress.distributed.shards import Shard, _Range, absolute_spec, count_samples, open_shard, plan_shards
from trtcompress.errors import MissingDependencyError
from trtcompress.job import CompressConfig
from trtcompress.stages.quantize import QuantizeConfig


@pytest.mark.parametrize("samples,shards,batch,align", [(320, 3, 64, 1), (1000, 7, 8, 1), (250, 4, 16, 1), (100, 8, 64, 1), (90, 4, 6, 4)])
def test_shards_cover_every_sample_once_on_whole_batches(samples, shards, batch, align):
    plan = plan_shards("d", DataOptions(batch=batch), samples, shards, align)
    assert plan[0].start == 0 and plan[-1].stop == samples
    assert all(a.stop == b.start for a, b in zip(plan, plan[1:]))
    unit = np.lcm(batch, align)
    assert all(s.start % unit == 0 for s in plan) and len(plan) == min(shards, -(-samples // unit))
    sizes = [s.samples for s in plan]
    assert max(sizes) - min(sizes) <= 2 * unit  # balanced up to a batch (the last one short)


def test_a_shard_reads_its_samples_and_not_the_files_before_it(tmp_path, monkeypatch):
    folder = fashion_files(tmp_path / "d", [30, 50, 20, 40])
    inputs = model_inputs(fashion_cnn())
    whole = np.concatenate([f["x"] for f in open_data(str(folder), inputs)])
    opened = []
    src = open_data(str(folder), inputs)
    make = src.source.make
    monkeypatch.setattr(src.source, "make", lambda f: opened.append(f.name) or make(f))
    got = np.concatenate([f["x"] for f in _Range(src, 85, 120)])
    assert np.array_equal(got, whole[85:120]) and opened == ["part002.npz", "part003.npz"]
    # a shard's batches are the single-process reader's batches
    options = DataOptions(batch=16)
    n, _ = count_samples(str(folder), inputs, options)
    batches = [b["x"] for s in plan_shards(str(folder), options, n, 3) for b in open_shard(s, inputs)]
    assert [len(b) for b in batches] == [len(b["x"]) for b in open_data(str(folder), inputs, options)]
    assert np.array_equal(np.concatenate(batches), whole)


@pytest.mark.parametrize("spec,batch", [("random:5", 4), ("random:3", None)])
def test_shards_of_generated_data_are_the_single_reader_samples(spec, batch):
    inputs = model_inputs(fashion_cnn())
    options = DataOptions(batch=batch)
    whole = np.concatenate([f["x"] for f in open_data(spec, inputs, options)])
    n, _ = count_samples(spec, inputs, options)
    shards = plan_shards(spec, options, n, 3)
    assert n == len(whole) and len(shards) > 1
    assert np.array_equal(np.concatenate([b["x"] for s in shards for b in open_shard(s, inputs)]), whole)


def test_shard_keepers_merge_into_one_pass_choice(tmp_path):
    folder = fashion_files(tmp_path / "d", [60, 60, 40])
    inputs = model_inputs(fashion_cnn())
    one = SampleKeeper(8)
    for _ in one.watch(open_data(str(folder), inputs, DataOptions(batch=16))):
        pass
    merged = SampleKeeper(8)
    for shard in reversed(plan_shards(str(folder), DataOptions(batch=16), 160, 4)):  # any order
        k = SampleKeeper(8)
        for _ in k.watch(open_shard(shard, inputs)):
            pass
        merged.merge(k)
    assert merged.seen == one.seen == 160
    assert all(np.array_equal(a["x"], b["x"]) for a, b in zip(merged.feeds(), one.feeds(), strict=True))


def test_relative_paths_are_made_absolute_for_tasks_elsewhere(tmp_path, monkeypatch):
    (tmp_path / "d").mkdir()
    (tmp_path / "r.py").write_text("def feeds():\n    return []\n")
    monkeypatch.chdir(tmp_path)
    assert absolute_spec("d") == str(tmp_path / "d") and absolute_spec("npz:d") == f"npz:{tmp_path / 'd'}"
    assert absolute_spec("module:r.py:feeds") == f"module:{tmp_path / 'r.py'}:feeds"
    assert absolute_spec("photos:calib") == "photos:calib" and absolute_spec("random:8") == "random:8"
    with pytest.raises(ValueError):
        Shard("d", DataOptions(), 5, 5)


def test_ray_flag_takes_an_optional_address():
    p = build_parser("quantize")
    assert p.parse_args(["quantize", "m.onnx", "-o", "q.onnx", "--ray"]).ray == "local"
    assert p.parse_args(["quantize", "m.onnx", "-o", "q.onnx", "--ray", "ray://head:10001"]).ray == "ray://head:10001"
    assert p.parse_args(["quantize", "m.onnx", "-o", "q.onnx"]).ray is None


def test_compress_hands_ray_to_the_quantize_stage():
    pytest.importorskip("ray")  # the config refuses --ray without the extra
    from trtcompress.cli.compress import build_config
    from trtcompress.job import _with_shared_data

    args = build_parser("compress").parse_args(["compress", "m.onnx", "--stages", "quantize", "--calib", "c", "--ray", "auto"])
    config = build_config(args)
    assert config.ray == "auto" and _with_shared_data(config.stages[0], config).ray == "auto"


def test_without_the_extra_ray_is_refused_before_any_work(monkeypatch, tmp_path, capsys):
    monkeypatch.setitem(sys.modules, "ray", None)  # as if not installed
    with pytest.raises(MissingDependencyError, match=r"pip install 'trtcompress\[ray\]'"):
        QuantizeConfig(calib="d", ray="local")
    with pytest.raises(MissingDependencyError, match=r"trtcompress\[ray\]"):
        CompressConfig(model="m.onnx", ray="local")
    code = main(["quantize", str(tmp_path / "missing.onnx"), "--calib", "d", "--ray", "-o", str(tmp_path / "q.onnx")])
    err = capsys.readouterr().err.strip()
    assert code == 2 and err.count("\n") == 0 and "trtcompress[ray]" in err
