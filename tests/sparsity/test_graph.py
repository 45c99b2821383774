"""What the onnx-ir layer under inspect and sparsify guarantees: the input model is never written,
a shared weight is copied for the layer pruned and left dense for the other, a weight read only
inside an If branch is pruned in place, Constant-node weights are rewritten as Constant nodes, and
an initializer that is also a graph input is not treated as a constant."""
from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from .graphs import conv_block, qdq_conv, run
from trtcompress.model_io import initializer_array
from trtcompress.sparsity.inspect import inspect_layers
from trtcompress.sparsity.masks import groups_violating
from trtcompress.sparsity.prune import PruneOptions, sparsify_onnx

RNG = np.random.default_rng(11)


def _matmuls(shared: bool, constant_node: bool = False) -> onnx.ModelProto:
    """x -> MatMul(a) -> Relu -> MatMul(b): both read ``w`` when ``shared``; ``constant_node``: b's
    weight is a Constant node instead of an initializer."""
    w, w2 = RNG.standard_normal((32, 32)).astype(np.float32), RNG.standard_normal((32, 32)).astype(np.float32)
    nodes = [helper.make_node("MatMul", ["x", "w"], ["h"], name="a"), helper.make_node("Relu", ["h"], ["r"], name="relu")]
    inits = [numpy_helper.from_array(w, "w")]
    if shared:
        nodes.append(helper.make_node("MatMul", ["r", "w"], ["y"], name="b"))
    elif constant_node:
        nodes.insert(0, helper.make_node("Constant", [], ["w2"], value=numpy_helper.from_array(w2)))
        nodes.append(helper.make_node("MatMul", ["r", "w2"], ["y"], name="b"))
    else:
        inits.append(numpy_helper.from_array(w2, "w2"))
        nodes.append(helper.make_node("MatMul", ["r", "w2"], ["y"], name="b"))
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 32])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 32])], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def test_the_input_model_is_never_written():
    for model in (conv_block(), conv_block(residual=True), qdq_conv(True), qdq_conv(False), _matmuls(True), _matmuls(False, constant_node=True)):
        before = model.SerializeToString()
        inspect_layers(model)
        sparsify_onnx(model, PruneOptions(min_channels=16, permute=True))
        sparsify_onnx(model, PruneOptions(min_channels=16, permute=True), apply_masks=False)
        assert model.SerializeToString() == before


def test_a_shared_weight_is_pruned_for_one_layer_and_stays_dense_for_the_other():
    model = _matmuls(shared=True)
    pruned, rep = sparsify_onnx(model, PruneOptions())
    assert [r["layer"] for r in rep["layers"]] == ["a"]
    assert rep["skipped"] == [{"layer": "b", "op": "MatMul", "shape": [32, 32], "reason": "shares weight 'w' with a layer already pruned"}]
    a, b = (n for n in pruned.graph.node if n.op_type == "MatMul")
    assert a.input[1] == "w_sparse" and b.input[1] == "w"
    w = initializer_array(model, "w")
    np.testing.assert_array_equal(initializer_array(pruned, "w"), w)
    ws = initializer_array(pruned, "w_sparse")
    assert groups_violating(ws, 0) == 0 and np.count_nonzero(ws) == w.size // 2
    x = RNG.standard_normal((3, 32)).astype(np.float32)
    np.testing.assert_allclose(run(pruned, {"x": x})[0], np.maximum(x @ ws, 0) @ w, rtol=1e-4, atol=1e-4)
    assert {l.layer for l in inspect_layers(pruned) if l.follows_2to4} == {"a"}


def test_a_constant_node_weight_stays_a_constant_node():
    model = _matmuls(shared=False, constant_node=True)
    pruned, rep = sparsify_onnx(model, PruneOptions())
    assert {r["layer"] for r in rep["layers"]} == {"a", "b"}
    (const,) = [n for n in pruned.graph.node if n.op_type == "Constant"]
    w2 = numpy_helper.to_array(const.attribute[0].t)
    assert const.output[0] == "w2" and groups_violating(w2, 0) == 0
    assert [t.name for t in pruned.graph.initializer] == ["w"]  # rewritten in place: no copies
    assert list(pruned.graph.value_info) == list(model.graph.value_info)  # the stage adds no annotations


def test_a_weight_only_a_branch_reads_is_pruned_in_place():
    w = RNG.standard_normal((32, 32)).astype(np.float32)
    out = lambda n: [helper.make_tensor_value_info(n, TensorProto.FLOAT, ["N", 32])]  # noqa: E731
    then = helper.make_graph([helper.make_node("MatMul", ["x", "w"], ["yt"], name="then_mm")], "then", [], out("yt"))
    other = helper.make_graph([helper.make_node("Relu", ["x"], ["ye"])], "else", [], out("ye"))
    graph = helper.make_graph([helper.make_node("If", ["c"], ["y"], name="branch", then_branch=then, else_branch=other)], "g",
                              out("x") + [helper.make_tensor_value_info("c", TensorProto.BOOL, [])], out("y"), [numpy_helper.from_array(w, "w")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    pruned, rep = sparsify_onnx(model, PruneOptions())
    assert [r["layer"] for r in rep["layers"]] == ["then_mm"]
    assert [t.name for t in pruned.graph.initializer] == ["w"]  # no dense original left behind
    ws = initializer_array(pruned, "w")
    assert groups_violating(ws, 0) == 0 and np.count_nonzero(ws) == w.size // 2
    x = RNG.standard_normal((2, 32)).astype(np.float32)
    np.testing.assert_allclose(run(pruned, {"x": x, "c": np.array(True)})[0], x @ ws, rtol=1e-4, atol=1e-4)


def test_an_initializer_that_is_a_graph_input_is_not_a_constant():
    model = conv_block()
    model.graph.input.extend(helper.make_tensor_value_info("w2", TensorProto.FLOAT, [32, 32, 3, 3]) for _ in [0])
    layers = {l.layer: l for l in inspect_layers(model)}
    assert layers["conv2"].shape is None and "'w2' is also a graph input" in layers["conv2"].reason
    _, rep = sparsify_onnx(model, PruneOptions(min_channels=16))
    assert {r["layer"] for r in rep["layers"]} == {"fc", "head"}
    assert any(s["layer"] == "conv2" and "graph input" in s["reason"] for s in rep["skipped"])
