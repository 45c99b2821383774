"""Shared by the Ray tests: real Fashion-MNIST images in .npz files, the shipped Fashion CNN, and
quantize runs whose written files (model, table, cache) are compared byte for byte."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from trtcompress import zoo
from trtcompress.model_io import load_model
from trtcompress.stages.quantize import QuantizeConfig, quantize


def fashion_files(folder: Path, sizes: list[int], offset: int = 0) -> Path:
    """Fashion-MNIST training images split into files of ``sizes`` samples (uneven on purpose:
    shards then cut files)."""
    x, _ = zoo.fashion_mnist("train", limit=offset + sum(sizes))
    folder.mkdir(parents=True, exist_ok=True)
    k = offset
    for i, n in enumerate(sizes):
        np.savez(folder / f"part{i:03d}.npz", x=x[k : k + n])
        k += n
    return folder


def fashion_cnn():
    return load_model(zoo.onnx_path("fashion_cnn"))


def written(model, config: QuantizeConfig) -> dict[str, bytes]:
    """What ``trtcompress quantize`` writes, as bytes: the model, the table (its timings, which
    differ between any two runs, left out) and the cache; plus the report."""
    r = quantize(model, config)
    table = json.loads(r.artifacts["calibration.json"])
    table["details"].pop("seconds")
    out = {"model": r.model.SerializeToString(), "table": json.dumps(table, indent=2).encode()}
    if "calibration.cache" in r.artifacts:
        out["cache"] = r.artifacts["calibration.cache"].encode()
    return out, r.report
