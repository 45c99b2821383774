"""``quantize`` writes the model and its calibration files together: when one of them cannot be
written, none is left (before, the model and table were written one by one, so a report that could
not be written left them behind)."""
from __future__ import annotations

import numpy as np

import trtcompress.model_io as model_io
from trtcompress import zoo
from trtcompress.cli.main import main
from trtcompress.errors import OutputError


def test_a_failed_model_write_leaves_no_calibration_files(tmp_path, monkeypatch, capsys):
    calib = tmp_path / "calib"
    calib.mkdir()
    np.savez(calib / "0.npz", x=zoo.fashion_mnist("train", limit=16)[0])
    out = tmp_path / "out"
    out.mkdir()
    args = ["quantize", str(zoo.onnx_path("fashion_cnn")), "--calib", str(calib), "--sensitivity-samples", "0",
            "--trt-version", "10.3.0", "--report", str(out / "report.json"), "-o", str(out / "m.onnx")]

    def full_disk(model, path, *a, **k):
        raise OutputError(f"cannot write {path}: no space left on the device; free space or write elsewhere")

    monkeypatch.setattr(model_io, "save_model", full_disk)
    assert main(args) != 0
    assert "no space left" in capsys.readouterr().err
    assert sorted(p.name for p in out.iterdir()) == []
    monkeypatch.undo()
    (out / "earlier").write_text("an earlier artifact")  # a file where the report's folder should be
    bad = [a if a != str(out / "report.json") else str(out / "earlier" / "report.json") for a in args]
    assert main(bad) != 0
    assert sorted(p.name for p in out.iterdir()) == ["earlier"] and (out / "earlier").read_text() == "an earlier artifact"
    (out / "earlier").unlink()
    assert main(args) == 0
    assert sorted(p.name for p in out.iterdir()) == ["m.calib.cache", "m.calib.json", "m.onnx", "report.json"]
