"""Resumable runs (trtcompress.stage_cache): a stage whose input model, config and data are unchanged
is reused, not recomputed, with --resume.

On fashion_cnn with real Fashion-MNIST through normalize, sparsify, quantize:
- a run interrupted in quantize (Ctrl-C) leaves no run directory but its finished stages in
  runs/.cache; resumed with a bad quantize option it fails there again and keeps its run directory
  (report and recipe); resumed right, normalize and sparsify are reused (the report says so and sparsify's
  function is not called) and the model is byte-identical to an uninterrupted run's
- without --resume nothing is reused
- a changed quantize config recomputes quantize only; a changed input model recomputes all
- the data fingerprint does not depend on where the data lies (a split folder of links to the same
  files), and changes when a file does
- a model over the protobuf limit is hashed tensor by tensor, and its weights are left in place
"""
from __future__ import annotations

import dataclasses
import functools
import json
import os

import numpy as np
import onnx
import pytest
import tomllib
from onnx import numpy_helper

from trtcompress import stage as stage_registry
from trtcompress import zoo
from trtcompress.errors import StageError
from trtcompress.job import CompressConfig, compress, stage_config
from trtcompress.stage_cache import data_fingerprint, model_digest


class Calls:
    """Wrap registered stages so a test counts their calls (and can make one fail)."""

    def __init__(self, monkeypatch):
        self.count: dict[str, int] = {}
        self.fail: dict[str, BaseException] = {}
        self.monkeypatch = monkeypatch

    def wrap(self, name: str) -> None:
        entry = stage_registry.get_stage(name)

        @functools.wraps(entry.fn)  # keeps stage_name and stage_entry (the contract)
        def counted(model, config):
            self.count[name] = self.count.get(name, 0) + 1
            if name in self.fail:
                raise self.fail.pop(name)
            return entry.fn(model, config)

        wrapped = dataclasses.replace(entry, fn=counted)
        self.monkeypatch.setitem(stage_registry._REGISTRY, entry.config_type, wrapped)
        self.monkeypatch.setitem(stage_registry._BY_NAME, name, wrapped)


def _config(model, fashion_dirs, runs, name, **quantize):
    return CompressConfig(model=str(model), runs_dir=str(runs), name=name, data=str(fashion_dirs / "eval"), calib=str(fashion_dirs / "calib"),
                          skip_bench=True, stages=(stage_config("sparsify"), stage_config("quantize", {"target": "cpu", **quantize})))


def _cached(result) -> dict[str, bool]:
    return {s["name"]: s["cached"] for s in result.report["stages"]}


def test_an_interrupted_run_resumes_where_it_stopped(fashion_dirs, tmp_path, monkeypatch):
    model = zoo.onnx_path("fashion_cnn")
    calls = Calls(monkeypatch)
    for name in ("normalize", "sparsify", "quantize"):
        calls.wrap(name)
    reference = compress(_config(model, fashion_dirs, tmp_path / "ref", "whole").replace(cache=False))
    assert not (tmp_path / "ref" / ".cache").exists()

    runs = tmp_path / "runs"
    calls.fail["quantize"] = KeyboardInterrupt()
    with pytest.raises(KeyboardInterrupt):
        compress(_config(model, fashion_dirs, runs, "r"))
    assert not (runs / "r").exists()  # an interrupted run leaves no run directory ...
    assert len(list((runs / ".cache").iterdir())) == 2  # ... but normalize and sparsify in the cache

    # resumed with a bad option in quantize: fails there, keeping a run directory with its recipe
    with pytest.raises(StageError, match="quantize"):
        compress(_config(model, fashion_dirs, runs, "r", calib=str(tmp_path / "missing")).replace(resume=True))
    kept = json.loads((runs / "r" / "report.json").read_text())
    assert kept["failure"]["stage"] == "quantize" and [(s["name"], s["cached"]) for s in kept["stages"]] == [("normalize", True), ("sparsify", True)]
    assert tomllib.loads((runs / "r" / "recipe.toml").read_text())["stages"][1]["calib"] == str(tmp_path / "missing")

    before = dict(calls.count)
    resumed = compress(_config(model, fashion_dirs, runs, "r").replace(resume=True))
    assert _cached(resumed) == {"normalize": True, "sparsify": True, "quantize": False}
    assert calls.count["sparsify"] == before["sparsify"] and calls.count["normalize"] == before["normalize"]
    assert resumed.model_path.read_bytes() == reference.model_path.read_bytes()
    assert resumed.report["compare"]["outputs"] == reference.report["compare"]["outputs"]

    # without --resume the cache is written, never read
    fresh = compress(_config(model, fashion_dirs, runs, "fresh"))
    assert not any(_cached(fresh).values()) and calls.count["sparsify"] == before["sparsify"] + 1

    # a changed quantize config recomputes quantize only
    changed = compress(_config(model, fashion_dirs, runs, "max", method="max").replace(resume=True))
    assert _cached(changed) == {"normalize": True, "sparsify": True, "quantize": False}
    assert changed.model_path.read_bytes() != reference.model_path.read_bytes()
    # the same again: all three reused
    assert all(_cached(compress(_config(model, fashion_dirs, runs, "max", method="max").replace(resume=True))).values())

    # a changed input model (one weight) recomputes every stage
    m = onnx.load(str(model))
    w = m.graph.initializer[0]
    a = numpy_helper.to_array(w).copy()
    a.flat[0] += 0.01
    w.CopyFrom(numpy_helper.from_array(a, w.name))
    other = tmp_path / "other.onnx"
    onnx.save(m, str(other))
    assert not any(_cached(compress(_config(other, fashion_dirs, runs, "other").replace(resume=True))).values())


def test_data_is_fingerprinted_by_what_it_holds_not_where(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    for i in range(3):
        np.save(data / f"{i}.npy", np.full((1, 4), i, np.float32))
    split_a, split_b = tmp_path / "tmp-a" / "calibration", tmp_path / "tmp-b" / "calibration"
    for d in (split_a, split_b):  # what --calib-from-data split makes: a temporary folder of links
        d.mkdir(parents=True)
        for name in ("0.npy", "2.npy"):
            (d / name).symlink_to(data / name)
    assert data_fingerprint(str(split_a)) == data_fingerprint(str(split_b)) != data_fingerprint(str(data))
    assert data_fingerprint(f"npz:{split_a}") == data_fingerprint(f"npz:{split_b}")
    assert data_fingerprint("random:8") is None and data_fingerprint("photos:calib") is None
    before = data_fingerprint(str(split_a))
    np.save(data / "2.npy", np.zeros((2, 4), np.float32))  # a linked file changes
    assert data_fingerprint(str(split_a)) != before
    reader = tmp_path / "reader.py"
    reader.write_text("def feeds():\n    return []\n")
    fp = data_fingerprint(f"module:{reader}:feeds")
    assert fp is not None
    reader.write_text("def feeds():\n    return [1]\n")
    os.utime(reader, ns=(1, 1))
    assert data_fingerprint(f"module:{reader}:feeds") != fp


def test_a_large_model_is_hashed_tensor_by_tensor_and_keeps_its_weights(monkeypatch):
    from trtcompress import weightless

    model = onnx.load(str(zoo.onnx_path("fashion_cnn")))
    small = model_digest(model)
    before = model.SerializeToString()
    monkeypatch.setattr(weightless, "is_large", lambda m: True)  # the branch for models over 2 GB
    large = model_digest(model)
    assert model.SerializeToString() == before and large != small
    assert model_digest(model) == large
    w = model.graph.initializer[0]
    a = numpy_helper.to_array(w).copy()
    a.flat[0] += 1
    w.CopyFrom(numpy_helper.from_array(a, w.name))
    assert model_digest(model) != large
