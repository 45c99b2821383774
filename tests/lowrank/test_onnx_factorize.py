"""The ONNX low-rank stage on models built in code, run in ONNX Runtime."""
from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from trtcompress.errors import ConfigError
from trtcompress.lowrank import LowRankConfig, factorize_onnx
from trtcompress.graph._util import add_initializer
from trtcompress.lowrank.onnx_rules import Constants, get_rule, registered_rules
from trtcompress.lowrank.svd import Spectrum
from trtcompress.pipeline import Pipeline
from trtcompress.stage import get_stage

from onnx_models import cnn, run


@pytest.fixture
def rng():
    return np.random.default_rng(0)


def _full_rank_rewrite(model: onnx.ModelProto, name: str) -> onnx.ModelProto:
    """Rewrite one node with factors of full rank (rank = min(out, in))."""
    import onnx_ir as ir

    m = ir.from_proto(model)
    node = next(n for n in m.graph if n.name == name)
    rule = get_rule(node.op_type)
    w = Constants(m).array(rule.weight(node))
    sp = Spectrum(rule.matrix(node, w), "exact")
    p, q = sp.factors(sp.full_rank)
    pair = rule.rewrite(node, p, q, w.shape, lambda n, a: add_initializer(m.graph, a.astype(w.dtype), n))
    ir.convenience.replace_nodes_and_values(m.graph, node, [node], pair, [node.outputs[0]], [pair[-1].outputs[0]])
    out = ir.to_proto(m)
    onnx.checker.check_model(out)
    return out


@pytest.mark.parametrize("trans_b", [0, 1])
@pytest.mark.parametrize("name", ["conv1", "conv2", "mm", "fc"])
def test_full_rank_factorisation_is_exact(rng, name, trans_b):
    model = cnn(rng, gemm_trans_b=trans_b)
    x = rng.standard_normal((4, 3, 8, 8)).astype(np.float32)
    out = _full_rank_rewrite(model, name)
    assert [n.op_type for n in out.graph.node].count(next(n.op_type for n in model.graph.node if n.name == name)) == [n.op_type for n in model.graph.node].count(next(n.op_type for n in model.graph.node if n.name == name)) + 1
    np.testing.assert_allclose(run(out, x), run(model, x), rtol=1e-4, atol=1e-4)


def test_rules_registered_by_op_type():
    assert {"Conv", "Gemm", "MatMul"} <= set(registered_rules())


def test_energy_rule_on_low_rank_weights_is_exact_and_skips_depthwise(rng):
    model = cnn(rng, rank=3)
    res = factorize_onnx(model, LowRankConfig(rule="energy", energy=0.999999))
    rep = res.report
    assert {l["name"]: l["rank"] for l in rep["layers"]} == {"conv1": 3, "conv2": 3, "mm": 3, "fc": 3}
    skipped = {s["name"]: s["reason"] for s in rep["skipped"]}
    assert "group=32" in skipped["dw"]
    x = rng.standard_normal((2, 3, 8, 8)).astype(np.float32)
    np.testing.assert_allclose(run(res.model, x), run(model, x), rtol=1e-3, atol=1e-3)
    # the input model is untouched; the old weights are gone from the output
    assert len(model.graph.node) == 7 and len(res.model.graph.node) == 11
    names = {t.name for t in res.model.graph.initializer}
    assert not {"W1", "W2", "Wm", "Wg"} & names and {"b1", "b2", "bg", "Wd"} <= names
    # the shapes inferred to count FLOPs do not ship: no value_info beyond the initialisers'
    assert {vi.name for vi in res.model.graph.value_info} <= names


def test_report_counts_params_and_flops(rng):
    model = cnn(rng, rank=3)
    rep = factorize_onnx(model, LowRankConfig(rule="energy", energy=0.999999)).report
    by = {l["name"]: l for l in rep["layers"]}
    c2 = by["conv2"]  # 32 x 16x3x3 at 4x4 outputs
    assert c2["flops_before"] == 2 * 32 * 144 * 16 and c2["flops_after"] == 2 * 3 * (144 + 32) * 16
    assert c2["params_before"] == 32 * 144 and c2["params_after"] == 3 * 176
    c1 = by["conv1"]  # 8x8 outputs
    assert c1["flops_before"] == 2 * 16 * 27 * 64
    saved = sum(l["flops_before"] - l["flops_after"] for l in rep["layers"])
    assert rep["flops_before"] - rep["flops_after"] == saved
    assert rep["params_before"] - rep["params_after"] == sum(l["params_before"] - l["params_after"] for l in rep["layers"])


def test_flops_rule_halves_the_factorised_layers(rng):
    model = cnn(rng)
    rep = factorize_onnx(model, LowRankConfig(rule="flops", flop_fraction=0.5)).report
    assert rep["factorised_flop_fraction"] <= 0.5
    dw = 2 * 32 * 9 * 4 * 4  # the depthwise conv is not eligible
    assert rep["flops_after"] - dw <= 0.5 * (rep["flops_before"] - dw)
    assert rep["factorised"] + sum("stays dense" in s["reason"] for s in rep["skipped"]) == 4


def test_error_rule_meets_the_budget_per_layer(rng):
    model = cnn(rng)
    feeds = [{"x": rng.standard_normal((4, 3, 8, 8)).astype(np.float32)} for _ in range(2)]
    res = factorize_onnx(model, LowRankConfig(rule="error", error=0.35), calibration=feeds)
    done = {l["name"]: l for l in res.report["layers"]}
    assert done, res.report["skipped"]
    for l in done.values():
        assert l["output_error"] <= 0.35
    # measure conv1's error independently: its output in the factorised model against the dense one
    if "conv1" in done:
        def conv1_out(m):
            mm = onnx.ModelProto()
            mm.CopyFrom(m)
            mm.graph.output.append(helper.make_tensor_value_info("c1", TensorProto.FLOAT, None))
            import onnxruntime as ort
            return ort.InferenceSession(mm.SerializeToString(), providers=["CPUExecutionProvider"]).run(["c1"], feeds[0])[0]
        a, b = conv1_out(model), conv1_out(res.model)
        est = np.linalg.norm(b - a) / np.linalg.norm(a)
        assert est == pytest.approx(done["conv1"]["output_error"], rel=0.3)


def test_error_rule_needs_data(rng):
    with pytest.raises(ConfigError, match="calibration"):
        factorize_onnx(cnn(rng), LowRankConfig(rule="error"))


def test_error_rule_reads_a_data_spec(rng):
    rep = factorize_onnx(cnn(rng), LowRankConfig(rule="error", error=0.5, calib="random:2", batch=2, limit=4)).report
    assert rep["rule"] == "error" and rep["factorised"] + len(rep["skipped"]) == 5


def test_skips_weights_that_are_graph_inputs_or_activations(rng):
    a = rng.standard_normal((64, 64)).astype(np.float32)
    nodes = [helper.make_node("MatMul", ["x", "W"], ["h"], name="overridable"), helper.make_node("MatMul", ["h", "x2"], ["y"], name="act")]
    g = helper.make_graph(
        nodes, "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 64]), helper.make_tensor_value_info("W", TensorProto.FLOAT, [64, 64]), helper.make_tensor_value_info("x2", TensorProto.FLOAT, [64, 3])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 3])], [numpy_helper.from_array(a, "W")],
    )
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    rep = factorize_onnx(m, LowRankConfig(rule="flops")).report
    reasons = {s["name"]: s["reason"] for s in rep["skipped"]}
    assert "graph input" in reasons["overridable"] and "not a constant" in reasons["act"]
    assert rep["factorised"] == 0


def test_exclude_and_ops_filters(rng):
    rep = factorize_onnx(cnn(rng), LowRankConfig(rule="flops", exclude=("conv*",), ops=("Conv", "Gemm"))).report
    names = {l["name"] for l in rep["layers"]}
    assert names == {"fc"}
    assert {s["name"] for s in rep["skipped"] if s["reason"] == "excluded by the config"} == {"conv1", "conv2"}


def test_stage_registered_and_runs_in_a_pipeline(rng):
    assert get_stage("lowrank").config_type is LowRankConfig
    res = Pipeline([LowRankConfig(rule="flops", flop_fraction=0.5)]).run(cnn(rng))
    assert res.stages[0].name == "lowrank" and res.stages[0].report["factorised"] >= 2
    onnx.checker.check_model(res.model)
