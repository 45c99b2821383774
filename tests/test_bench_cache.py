"""Benchmark caches are keyed by the code and the inputs that made them (benchmarks/_cache.py):
a table or export made from other code or other data gets another name and is never reused."""
from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

import _cache  # noqa: E402


def test_key_follows_inputs_and_code(tmp_path, monkeypatch):
    data = tmp_path / "calib"
    data.mkdir()
    (data / "a.npz").write_bytes(b"one")
    model = tmp_path / "m.onnx"
    model.write_bytes(b"model")
    code = tmp_path / "code"
    code.mkdir()
    (code / "calibrate.py").write_text("AMAX = 1\n")
    monkeypatch.setattr(_cache, "CODE", code)

    def key():
        return _cache.keyed(tmp_path / "t.calib.json", model, data, "entropy")

    first = key()
    assert first == key() and first.suffix == ".json" and first.name.startswith("t.calib-")
    (data / "a.npz").write_bytes(b"two")  # other calibration data
    second = key()
    assert second != first
    model.write_bytes(b"model v2")  # another model
    third = key()
    assert third not in (first, second)
    (code / "calibrate.py").write_text("AMAX = 2\n")  # other calibration code: the stale table is not reused
    assert key() not in (first, second, third)
    assert _cache.keyed(tmp_path / "t.calib.json", model, data, "max") != key()  # other options
