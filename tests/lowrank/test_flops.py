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


def test_layers_inside_if_branches_are_counted():
    """silero-vad keeps its layers in If branches: their shapes come from inference on the branch."""
    w = numpy_helper.from_array(np.ones((32, 16), np.float32))
    then = helper.make_graph([helper.make_node("Constant", [], ["w_then"], value=w), helper.make_node("MatMul", ["x", "w_then"], ["y_then"], name="then_mm")],
                             "then", [], [helper.make_tensor_value_info("y_then", TensorProto.FLOAT, None)])
    other = helper.make_graph([helper.make_node("Identity", ["x"], ["y_else"])], "else", [], [helper.make_tensor_value_info("y_else", TensorProto.FLOAT, None)])
    g = helper.make_graph([helper.make_node("If", ["c"], ["y"], name="branch", then_branch=then, else_branch=other)], "g",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 8, 32]), helper.make_tensor_value_info("c", TensorProto.BOOL, [])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    assert model_macs(m) == {"then_mm": 8 * 16 * 32}
