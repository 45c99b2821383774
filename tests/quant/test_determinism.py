"""Determinism: the same calibration samples give byte-identical artifacts (TensorRT-form Q/DQ
ONNX, CPU-form ONNX, TensorRT calibration cache) whatever the batch size, the split into files and
the order of the samples. Run on a shipped zoo model with real Fashion-MNIST images."""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest

from trtcompress.cli.main import main
from trtcompress.zoo import onnx_path

ROOT = Path(__file__).resolve().parents[2]


def _digest(p: Path) -> str:
    return hashlib.sha256(p.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def layouts(tmp_path_factory) -> dict[str, tuple[Path, str]]:
    """Three layouts of the same 96 samples: (folder, --batch)."""
    x = np.concatenate([np.load(ROOT / "calibration" / "fashion_mnist" / f"train-0{i}.npz")["x"] for i in (0, 1)])[:96]
    base = tmp_path_factory.mktemp("layouts")
    out = {}
    a = base / "stored"
    a.mkdir()
    np.savez(a / "all.npz", x=x)
    out["one file, batch as stored"] = (a, "")
    b = base / "shuffled"
    b.mkdir()
    perm = np.random.default_rng(3).permutation(len(x))
    for k, part in enumerate(np.array_split(x[perm], 6)):
        np.savez(b / f"part{k}.npz", x=part)
    out["six shuffled files, batch 7"] = (b, "7")
    c = base / "reversed"
    c.mkdir()
    for k, sample in enumerate(x[::-1][:96]):
        np.save(c / f"s{k:03d}.npy", sample)  # one sample per file, no batch dimension
    out["reversed, one sample a file, batch 32"] = (c, "32")
    return out


@pytest.mark.parametrize("target,artifacts", [("tensorrt", ("q.onnx", "q.calib.cache")), ("cpu", ("q.onnx",))])
def test_artifacts_do_not_depend_on_batching_or_order(target, artifacts, layouts, tmp_path):
    digests = {}
    for label, (folder, batch) in layouts.items():
        out = tmp_path / label.replace(" ", "_").replace(",", "")
        argv = ["quantize", str(onnx_path("fashion_cnn")), "--calib", str(folder), "--target", target, "-o", str(out / "q.onnx")]
        if batch:
            argv += ["--batch", batch]
        if target == "tensorrt":
            argv += ["--trt-version", "10.3.0"]  # also write the TensorRT calibration cache
        assert main(argv) == 0
        digests[label] = {name: _digest(out / name) for name in artifacts}
        # the JSON table also records timings and batch counts; its ranges must agree
        table = json.loads((out / "q.calib.json").read_text())
        digests[label]["table"] = (table["amax"], table["method"], table["num_samples"], table["details"].get("range_choice"))
    first = next(iter(digests.values()))
    for label, d in digests.items():
        assert d == first, f"{label} differs from the first layout"
