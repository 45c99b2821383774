"""Graph outputs stay float in both forms unless ``quantize_outputs`` asks for 8 bits.

On the real text detector: a calibrated 8-bit range on the score map loses the rare high scores
that are the text (with ``quantize_outputs`` the peak falls from 1.0 to about 0), and an output
written by an int8 layer (the head conv's map, exposed as a second output) is stored on 256 levels.
"""
from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import helper

from text_detector import INPUTS, PREPROCESS, SCORES, det_model_opset13, text_photos
from trtcompress.data.preprocess import PreprocessConfig
from trtcompress.stages.quantize import QuantizeConfig, quantize

HEAD_CONV = "conv2d_497.tmp_0"  # the conv whose map the head upsamples into scores


@pytest.fixture(scope="module")
def detector(tmp_path_factory):
    root = tmp_path_factory.mktemp("det")
    model = onnx.load(str(det_model_opset13(root / "det13.onnx")))
    model.graph.output.append(helper.make_tensor_value_info(HEAD_CONV, onnx.TensorProto.FLOAT, None))
    calib, evaluation = text_photos(root)
    pre = PreprocessConfig.parse(PREPROCESS)
    feeds = [pre(p) for p in sorted(evaluation.iterdir())]
    return model, str(calib), feeds


def _run(model: onnx.ModelProto, feeds) -> list[dict[str, np.ndarray]]:
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC  # exact Q/DQ arithmetic (see comparison.exact_qdq_options)
    so.intra_op_num_threads, so.log_severity_level = 2, 3
    sess = ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"])
    names = [o.name for o in sess.get_outputs()]
    return [dict(zip(names, sess.run(None, {"x": x}))) for x in feeds]


def _quantize(model, calib: str, target: str, **kw) -> onnx.ModelProto:
    # no per-layer sensitivity pass: where outputs are stored does not depend on it, and it is most of the time
    config = QuantizeConfig(target=target, calib=calib, preprocess=PREPROCESS, inputs=INPUTS, sensitivity_samples=0, progress=False, **kw)
    return quantize(model, config).model


@pytest.mark.parametrize("target", ["cpu", "tensorrt"])
def test_outputs_stay_float_by_default(detector, target):
    model, calib, feeds = detector
    q = _quantize(model, calib, target)
    producers = {o: n.op_type for n in q.graph.node for o in n.output}
    assert producers[SCORES] != "DequantizeLinear" and producers[HEAD_CONV] != "DequantizeLinear"
    for ref, out in zip(_run(model, feeds), _run(q, feeds)):
        # an 8-bit output has at most 256 values per image; a float one has many thousands
        assert len(np.unique(out[HEAD_CONV])) > 1000
        assert out[SCORES].max() > 0.9 * ref[SCORES].max()  # the text's peak scores survive


@pytest.mark.parametrize("target", ["cpu", "tensorrt"])
def test_quantize_outputs_is_opt_in_and_stores_8_bits(detector, target):
    model, calib, feeds = detector
    q = _quantize(model, calib, target, quantize_outputs=True)
    for ref, out in zip(_run(model, feeds), _run(q, feeds)):
        assert len(np.unique(out[HEAD_CONV])) <= 256 and len(np.unique(out[SCORES])) <= 256
        # what the option costs on this model: the calibrated range clips the text's scores away
        assert out[SCORES].max() < 0.5 * ref[SCORES].max()


def test_cli_flag_stores_outputs_in_8_bits(tmp_path):
    """``trtcompress quantize --quantize-outputs``: the zoo classifier's logits (a Gemm written in
    float by default) go through uint8 in the CPU form."""
    from pathlib import Path

    from trtc_support import cli
    from trtcompress.zoo.models import onnx_path

    calib = Path(__file__).resolve().parents[2] / "calibration" / "fashion_mnist"
    producers = {}
    for flag in ((), ("--quantize-outputs",)):
        out = tmp_path / f"m{len(flag)}.onnx"
        cli("quantize", str(onnx_path("fashion_cnn")), "--calib", str(calib), "--limit", "64", "--target", "cpu", *flag, "-o", str(out), check=True)
        m = onnx.load(str(out))
        producers[flag] = {o: n.op_type for n in m.graph.node for o in n.output}["logits"]
    assert producers[()] == "MatMulIntegerToFloat" and producers[("--quantize-outputs",)] == "DequantizeLinear"
