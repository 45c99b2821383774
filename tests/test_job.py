from __future__ import annotations

from trtcompress.job import CompressConfig, _with_shared_data


def test_stages_take_the_jobs_calibration_data():
    from trtcompress.stages.quantize import QuantizeConfig

    cfg = CompressConfig(model="m.onnx", data="photos:eval", calib="photos:calib", preprocess="efficientnet-lite")
    q = _with_shared_data(QuantizeConfig(), cfg)
    assert q.calib == "photos:calib" and q.preprocess == "efficientnet-lite"
    own = _with_shared_data(QuantizeConfig(calib="mine/"), cfg)
    assert own.calib == "mine/"
    # the evaluation data is never the calibration data unless the user says so
    assert _with_shared_data(QuantizeConfig(), CompressConfig(model="m.onnx", data="d/")).calib == ""
    assert _with_shared_data(QuantizeConfig(), CompressConfig(model="m.onnx", data="d/", calib_from_data="same")).calib == "d/"
    # the default random comparison inputs are never used for calibration implicitly
    assert _with_shared_data(QuantizeConfig(), CompressConfig(model="m.onnx")).calib == ""
    assert _with_shared_data(QuantizeConfig(), CompressConfig(model="m.onnx", calib="random:4")).calib == "random:4"
