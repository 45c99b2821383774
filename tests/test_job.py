from __future__ import annotations

import numpy as np
from onnx import TensorProto, helper, numpy_helper

from trtcompress.job import CompressConfig, _compare_options, _with_shared_data
from trtcompress.runners import RunnerOptions


def _qdq_model(zero_point_type):
    zp = numpy_helper.from_array(np.zeros((), {TensorProto.INT8: np.int8, TensorProto.UINT8: np.uint8}[zero_point_type]), "zp")
    s = numpy_helper.from_array(np.array(0.1, np.float32), "s")
    nodes = [helper.make_node("QuantizeLinear", ["x", "s", "zp"], ["q"]), helper.make_node("DequantizeLinear", ["q", "s", "zp"], ["y"])]
    g = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])], [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])], [zp, s])
    return helper.make_model(g)


def test_tensorrt_form_is_compared_with_exact_qdq_arithmetic():
    cfg = CompressConfig(model="m.onnx")
    assert _compare_options(_qdq_model(TensorProto.INT8), cfg).optimization == "basic"
    assert _compare_options(_qdq_model(TensorProto.UINT8), cfg).optimization == "all"
    off = CompressConfig(model="m.onnx", runner=RunnerOptions(optimization="disable"))
    assert _compare_options(_qdq_model(TensorProto.INT8), off).optimization == "disable"


def test_stages_take_the_jobs_calibration_data():
    from trtcompress.stages.quantize import QuantizeConfig

    cfg = CompressConfig(model="m.onnx", data="photos:eval", calib="photos:calib", preprocess="efficientnet-lite")
    q = _with_shared_data(QuantizeConfig(), cfg)
    assert q.calib == "photos:calib" and q.preprocess == "efficientnet-lite"
    own = _with_shared_data(QuantizeConfig(calib="mine/"), cfg)
    assert own.calib == "mine/"
    assert _with_shared_data(QuantizeConfig(), CompressConfig(model="m.onnx", data="d/")).calib == "d/"
    # the default random comparison inputs are never used for calibration implicitly
    assert _with_shared_data(QuantizeConfig(), CompressConfig(model="m.onnx")).calib == ""
    assert _with_shared_data(QuantizeConfig(), CompressConfig(model="m.onnx", calib="random:4")).calib == "random:4"
