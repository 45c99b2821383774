"""TensorRT placement rules, one op at a time, and include/exclude."""
from __future__ import annotations

import pytest

from trtcompress.errors import ConfigError
from trtcompress.quant.placement import plan_quantization, registered_rules

import qdq_graphs as graphs


def _acts(plan, node):
    return sorted(a.index for a in plan.activations if a.node == node)


def _weights(plan, node):
    return {w.index: w.axis for w in plan.weights if w.node == node}


def test_registry_covers_compute_ops_and_residual_add():
    assert {"Conv", "ConvTranspose", "Gemm", "MatMul", "Add"} <= set(registered_rules())


def test_conv_weights_per_output_channel_and_post_activation_inputs():
    m = graphs.mbconv()
    plan = plan_quantization(m)
    for conv in ("stem", "expand", "depthwise", "project", "head"):
        assert _acts(plan, conv) == [0]
        assert _weights(plan, conv) == {1: 0}
    # the ReLU6 trap: the quantized tensors are the clip outputs, never the raw conv outputs before them
    qdq = set(plan.qdq_tensors)
    assert {"a0", "a1", "a2"} <= qdq
    assert not {"c0", "c1", "c2"} & qdq
    assert plan.bounds["a1"] == 6.0


def test_residual_add_quantizes_the_skip_input_only():
    plan = plan_quantization(graphs.mbconv())
    assert [(a.index, a.tensor) for a in plan.activations if a.node == "residual"] == [(1, "a0")]
    # the CPU lowering also needs the fused branch and the sum
    assert {"c3", "s"} <= set(plan.activation_tensors)


def test_gemm_axis_follows_transB():
    plan = plan_quantization(graphs.mbconv())
    assert _weights(plan, "fc") == {1: 0}  # transB=1: B is [N, K]
    plan = plan_quantization(graphs.conv_transpose())
    assert _weights(plan, "gemm_nt") == {1: 1}  # transB=0: B is [K, N]
    assert _weights(plan, "deconv") == {1: 1}  # ConvTranspose weight [C_in, C_out, k, k]


def test_transformer_placement():
    plan = plan_quantization(graphs.encoder())
    # projections: activation input + weight per output column
    for mm in ("q_proj", "k_proj", "v_proj", "o_proj", "fc1", "fc2"):
        assert _acts(plan, mm) == [0] and _weights(plan, mm) == {1: 1}
    # both attention matmuls: two activations, no weights
    assert _acts(plan, "qk") == [0, 1] and _weights(plan, "qk") == {}
    assert _acts(plan, "av") == [0, 1]
    # mask Add, LayerNorm, Softmax, GELU/Erf and residual adds of non-conv branches stay float
    assert "attention-mask" in plan.float_nodes["mask_add"]
    for n in ("ln1", "ln2", "softmax", "gelu_erf", "residual1", "residual2", "scale"):
        assert n in plan.float_nodes and n not in plan.quantized_nodes
    assert "masked" not in plan.activation_tensors and "bias" not in plan.activation_tensors


def test_mask_add_is_never_quantized_even_when_included():
    plan = plan_quantization(graphs.encoder(), include=("Add", "MatMul"))
    assert "mask_add" not in plan.quantized_nodes


def test_unsupported_ops_are_left_float_with_a_reason():
    plan = plan_quantization(graphs.conv_transpose())
    assert "left float" in plan.float_nodes["mean"]
    assert plan.to_dict()["kept_float"]


@pytest.mark.parametrize(
    "kw, float_node, reason",
    [
        ({"exclude": ("head",)}, "head", "excluded by 'head'"),
        ({"exclude": ("Gemm",)}, "fc", "excluded by 'Gemm'"),
        ({"exclude": ("dep*",)}, "depthwise", "excluded by 'dep*'"),
        ({"exclude": ("re:^(exp|proj)",)}, "project", "excluded by 're:^(exp|proj)'"),
        ({"include": ("stem", "fc")}, "expand", "not matched by the include patterns"),
    ],
)
def test_include_exclude(kw, float_node, reason):
    plan = plan_quantization(graphs.mbconv(), **kw)
    assert plan.float_nodes[float_node] == reason
    assert float_node not in plan.quantized_nodes
    assert all(a.node != float_node for a in plan.activations)


def test_excluding_the_conv_branch_drops_the_residual_add():
    plan = plan_quantization(graphs.mbconv(), exclude=("project",))
    assert "residual" not in plan.quantized_nodes


@pytest.mark.parametrize("pattern", ["nosuchnode", "re:^zzz"])
def test_pattern_matching_nothing_is_an_error(pattern):
    with pytest.raises(ConfigError, match="matches no node"):
        plan_quantization(graphs.mbconv(), exclude=(pattern,))


def test_bad_regex_is_a_config_error():
    with pytest.raises(ConfigError, match="bad regular expression"):
        plan_quantization(graphs.mbconv(), include=("re:(",))


def test_plan_without_keeps_layers_float():
    plan = plan_quantization(graphs.mbconv())
    fewer = plan.without(["expand"])
    assert "expand" not in fewer.quantized_nodes and fewer.float_nodes["expand"].startswith("kept float")
    assert all(w.node != "expand" for w in fewer.weights)
    assert fewer.activation_tensors == plan.activation_tensors or set(fewer.activation_tensors) <= set(plan.activation_tensors)


@pytest.mark.parametrize("fill, bounded", [(None, True), (0.0, True), (7.0, False)])
def test_relu6_bound_carries_through_padding(fill, bounded):
    # EfficientNet-style explicit padding before a depthwise conv: the padded tensor is still
    # within [0, 6] (so it needs only its max) unless the pad value lies outside the bound
    import numpy as np
    from onnx import TensorProto, helper

    pad_inputs = ["a", "pads"] + (["fill"] if fill is not None else [])
    inits = {"lo": np.array(0.0, np.float32), "hi": np.array(6.0, np.float32), "pads": np.array([0, 0, 1, 1, 0, 0, 1, 1], np.int64),
             "w": np.ones((4, 1, 3, 3), np.float32), **({"fill": np.array(fill, np.float32)} if fill is not None else {})}
    nodes = [
        helper.make_node("Clip", ["x", "lo", "hi"], ["a"], name="relu6"),
        helper.make_node("Pad", pad_inputs, ["p"], name="pad"),
        helper.make_node("Conv", ["p", "w"], ["y"], name="dw", group=4),
    ]
    m = graphs._model(nodes, [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 4, 8, 8])],
                      [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 4, 8, 8])], inits)
    plan = plan_quantization(m)
    assert plan.qdq_tensors == ["p"]
    assert plan.bounds.get("p") == (6.0 if bounded else None)
