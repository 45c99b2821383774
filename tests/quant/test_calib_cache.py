"""TensorRT calibration cache: version encoding, byte format, round trip; the calibrator on TensorRT."""
from __future__ import annotations

import struct

import numpy as np
import pytest

from trtcompress.errors import ConfigError, DataError
from trtcompress.quant.cache import format_cache, parse_cache, read_cache, trt_version_number, write_cache
from trtcompress.quant.table import CalibrationTable


@pytest.mark.parametrize("version,number", [("8.5.2", 8502), ("8.6.1", 8601), ("8.6.1.6", 8601), ("7.2.3", 7203), ("10.3.0", 100300), ("10.13.2", 101302), ("10.0", 100000)])
def test_version_numbers(version, number):
    assert trt_version_number(version) == number


def test_tensorrt_11_is_refused_with_a_reason():
    with pytest.raises(ConfigError, match="TensorRT 11.*removed.*Q/DQ"):
        trt_version_number("11.4.1")
    with pytest.raises(ConfigError):
        trt_version_number("6.0.1")
    with pytest.raises(ConfigError):
        trt_version_number("latest")


def test_byte_format():
    table = CalibrationTable({"input": 127.0, "conv1:0": 2.54, "x": 1e-3}, "entropy")
    text = format_cache(table, "8.6.1")
    lines = text.splitlines()
    assert lines[0] == "TRT-8601-EntropyCalibration2"
    assert lines[1] == "input: 3f800000"  # scale 1.0
    assert lines[2] == "conv1:0: " + struct.pack(">f", 2.54 / 127).hex()
    assert text.endswith("\n") and len(lines) == 4


def test_round_trip(tmp_path):
    rng = np.random.default_rng(0)
    table = CalibrationTable({f"t{i}": float(v) for i, v in enumerate(rng.uniform(1e-4, 1e4, 50))}, "entropy", 100)
    p = write_cache(table, tmp_path / "calib.cache", "10.3.0")
    back = read_cache(p)
    assert back.details == {"trt_version_number": 100300, "algorithm": "EntropyCalibration2"}
    assert list(back.amax) == list(table.amax)
    for k, v in table.amax.items():
        # the scale is stored as float32: the same bits come back
        assert np.float32(back.amax[k] / 127) == np.float32(v / 127)
    assert format_cache(back, "10.3.0") == p.read_text()


def test_bad_caches_are_refused(tmp_path):
    with pytest.raises(DataError, match="header"):
        parse_cache("conv: 3f800000\n")
    with pytest.raises(DataError, match="line 2"):
        parse_cache("TRT-8601-EntropyCalibration2\nconv 3f80\n")
    with pytest.raises(DataError, match="not found"):
        read_cache(tmp_path / "missing.cache")
    with pytest.raises(DataError, match="positive"):
        format_cache(CalibrationTable({"x": 0.0}, "max"))


@pytest.mark.trt
def test_calibrator_serves_the_cache():
    import tensorrt as trt

    from trtcompress.quant.calibrator import cache_calibrator

    table = CalibrationTable({"x": 2.0}, "entropy")
    cal = cache_calibrator(table)
    assert isinstance(cal, trt.IInt8EntropyCalibrator2)
    assert cal.get_batch(["x"]) is None
    assert cal.read_calibration_cache().decode() == format_cache(table, trt.__version__)
