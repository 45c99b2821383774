"""Layers inside If/Loop/Scan bodies are found by inspect, pruned by sparsify, factorised by lowrank,
and named by quantize (which leaves them float): a hand-built If model and silero-vad's ONNX file,
which keeps every layer inside an If on the sample rate."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from trtcompress.errors import ModelError
from trtcompress.lowrank import LowRankConfig
from trtcompress.lowrank.onnx_factorize import factorize_onnx
from trtcompress.sparsity.inspect import inspect_layers
from trtcompress.sparsity.masks import groups_violating
from trtcompress.sparsity.prune import PruneOptions, sparsify_onnx
from trtcompress.stages.quantize import QuantizeConfig, quantize
from trtcompress.subgraphs import outer_names, used_names, walk

RNG = np.random.default_rng(0)
W_THEN = RNG.standard_normal((32, 32)).astype(np.float32)  # a Constant node inside the branch
W_ELSE = RNG.standard_normal((32, 32)).astype(np.float32)  # a main-graph initialiser the branch reads
W_PRE = RNG.standard_normal((32, 32)).astype(np.float32)  # a main-graph layer before the If


def _if_model(pre: bool = True) -> onnx.ModelProto:
    then = helper.make_graph(
        [helper.make_node("Constant", [], ["w_then"], value=numpy_helper.from_array(W_THEN)), helper.make_node("MatMul", ["h", "w_then"], ["y_then"], name="then_mm")],
        "then", [], [helper.make_tensor_value_info("y_then", TensorProto.FLOAT, ["N", 32])],
    )
    other = helper.make_graph(
        [helper.make_node("MatMul", ["h", "w_else"], ["y_else"], name="else_mm")],
        "else", [], [helper.make_tensor_value_info("y_else", TensorProto.FLOAT, ["N", 32])],
    )
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w_pre"], ["h"], name="pre_mm") if pre else helper.make_node("Identity", ["x"], ["h"]), helper.make_node("If", ["cond"], ["y"], name="branch", then_branch=then, else_branch=other)],
        "if_model",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 32]), helper.make_tensor_value_info("cond", TensorProto.BOOL, [])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 32])],
        [numpy_helper.from_array(W_ELSE, "w_else"), numpy_helper.from_array(W_PRE, "w_pre")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    onnx.checker.check_model(model)
    return model


def _run(model: onnx.ModelProto, x: np.ndarray, cond: bool) -> np.ndarray:
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return sess.run(None, {"x": x, "cond": np.array(cond)})[0]


def _branch_weights(model: onnx.ModelProto) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(then weight, else weight, weight before the If) as the model holds them after a rewrite."""
    then = next(numpy_helper.to_array(n.attribute[0].t) for g, s in walk(model.graph) if s.endswith("then_branch") for n in g.node if n.op_type == "Constant")
    mm = next(n for g, _ in walk(model.graph) for n in g.node if n.name == "else_mm")
    pre = next(n for n in model.graph.node if n.name == "pre_mm")
    inits = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    return then, inits[mm.input[1]], inits[pre.input[1]]


def test_outer_names_and_used_names():
    model = _if_model()
    assert outer_names(model.graph.node[1]) == {"h", "w_else"}  # w_then is defined inside the branch
    assert {"h", "w_else", "cond", "y"} <= used_names(model.graph)


def test_inspect_and_sparsify_reach_both_branches():
    model = _if_model()
    assert {(l.layer, l.scope) for l in inspect_layers(model)} == {("pre_mm", ""), ("then_mm", "branch/then_branch"), ("else_mm", "branch/else_branch")}
    pruned, report = sparsify_onnx(model, PruneOptions())
    onnx.checker.check_model(pruned)
    then, other, pre = _branch_weights(pruned)
    for w in (then, other, pre):
        assert groups_violating(w, 0) == 0 and np.count_nonzero(w) == w.size // 2
    assert all(l.follows_2to4 for l in inspect_layers(pruned))
    x = RNG.standard_normal((3, 32)).astype(np.float32)
    np.testing.assert_allclose(_run(pruned, x, True), x @ pre @ then, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(_run(pruned, x, False), x @ pre @ other, rtol=1e-4, atol=1e-4)
    # the kept weights are the larger two of each group of four, in both branches
    np.testing.assert_array_equal(then != 0, np.abs(W_THEN) >= np.sort(np.abs(W_THEN).reshape(8, 4, 32), axis=1)[:, 2:3].repeat(4, 1).reshape(32, 32))


def test_lowrank_factorises_inside_branches():
    model = _if_model()
    result = factorize_onnx(model, LowRankConfig(rule="flops", flop_fraction=0.5))
    out = result.model
    onnx.checker.check_model(out)
    ranks = {l["name"]: l["rank"] for l in result.report["layers"]}
    assert set(ranks) == {"pre_mm", "then_mm", "else_mm"}
    assert not [n for g, s in walk(out.graph) if s for n in g.node if n.op_type == "Constant" and n.output[0] == "w_then"]  # no dead weight
    x = RNG.standard_normal((4, 32)).astype(np.float32)
    def truncated(w, name):
        u, s, vt = np.linalg.svd(w)
        r = ranks[name]
        return (u[:, :r] * s[:r]) @ vt[:r]

    # the layer before the If and the one inside each branch are all factorised (bodies are
    # rewritten before the graph that holds them, so a rewrite of both keeps both)
    for cond, w, name in ((True, W_THEN, "then_mm"), (False, W_ELSE, "else_mm")):
        np.testing.assert_allclose(_run(out, x, cond), x @ truncated(W_PRE, "pre_mm") @ truncated(w, name), rtol=1e-3, atol=1e-3)


def test_quantize_names_subgraph_layers_it_leaves_float():
    with pytest.raises(ModelError, match="inside If/Loop/Scan bodies"):
        quantize(_if_model(pre=False), QuantizeConfig(calib="random:1", inputs=("x:1x32",)))
    result = quantize(_if_model(), QuantizeConfig(calib="random:2", target="cpu", sensitivity_samples=0))
    assert [q["node"] for q in result.report["plan"]["quantized"]] == ["pre_mm"]
    assert {r["layer"] for r in result.report["subgraph_layers_float"]} == {"then_mm", "else_mm"}
    x = RNG.standard_normal((2, 32)).astype(np.float32)
    got, ref = _run(result.model, x, True), x @ W_PRE @ W_THEN
    assert np.corrcoef(got.ravel(), ref.ravel())[0, 1] > 0.99


silero = pytest.importorskip("silero_vad")
VAD = Path(silero.__file__).parent / "data" / "silero_vad.onnx"


def _vad_outputs(model: onnx.ModelProto) -> list[np.ndarray]:
    rng = np.random.default_rng(3)
    feed = {"input": rng.standard_normal((2, 512), dtype=np.float32) * 0.1, "state": np.zeros((2, 2, 128), np.float32), "sr": np.array(16000)}
    return ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, feed)


def test_vad_layers_inside_the_if_are_inspected_pruned_and_factorised():
    model = onnx.load(str(VAD))
    layers = inspect_layers(model)
    assert len(layers) == 12 and all(l.layer.startswith("If_0_") for l in layers)  # 6 per branch (8 kHz, 16 kHz)
    pruned, report = sparsify_onnx(model, PruneOptions())
    assert sum(l.follows_2to4 for l in inspect_layers(pruned)) == 6
    onnx.checker.check_model(pruned)
    ref = _vad_outputs(model)
    got = _vad_outputs(pruned)
    assert np.abs(got[0] - ref[0]).max() < 0.05  # speech probability after 2:4 without fine-tuning
    factored = factorize_onnx(model, LowRankConfig(rule="energy", energy=0.999))
    assert factored.report["factorised"] > 0
    onnx.checker.check_model(factored.model)
    np.testing.assert_allclose(_vad_outputs(factored.model)[0], ref[0], atol=0.02)
