"""MAC counting of matrix ops."""
from __future__ import annotations

import numpy as np
from onnx import TensorProto, helper, numpy_helper

from trtcompress.lowrank.flops import model_macs

from onnx_models import cnn


def test_cnn_macs_by_hand():
    macs = model_macs(cnn(np.random.default_rng(0)))
    assert macs["conv1"] == 16 * 27 * 8 * 8  # K x C*R*S per output pixel, 8x8 pixels
    assert macs["conv2"] == 32 * 16 * 9 * 4 * 4  # stride 2 -> 4x4
    assert macs["dw"] == 32 * 1 * 9 * 4 * 4  # depthwise: one input channel per output
    assert macs["mm"] == 512 * 64
    assert macs["fc"] == 64 * 10


def test_batched_matmul_between_activations():
    g = helper.make_graph(
        [helper.make_node("MatMul", ["q", "k"], ["s"], name="attn")], "g",
        [helper.make_tensor_value_info("q", TensorProto.FLOAT, ["N", 4, 16, 8]), helper.make_tensor_value_info("k", TensorProto.FLOAT, ["N", 4, 8, 16])],
        [helper.make_tensor_value_info("s", TensorProto.FLOAT, ["N", 4, 16, 16])],
    )
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    assert model_macs(m)["attn"] == 4 * 16 * 16 * 8
