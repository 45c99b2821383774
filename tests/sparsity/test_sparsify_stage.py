"""The ``sparsify`` stage and layer inspection on small graphs built in code, run in ONNX Runtime."""
from __future__ import annotations

import json

import numpy as np
import onnx
import pytest

from trtc_support import cli
from .graphs import conv_block, gemm_pair, mlp, qdq_conv, run
from trtcompress.errors import ConfigError, ModelError
from trtcompress.model_io import initializer_array, save_model
from trtcompress.sparsity.inspect import inspect_layers, summarize
from trtcompress.sparsity.prune import PruneOptions, sparsify_onnx
from trtcompress.stage import get_stage
from trtcompress.stages.sparsify import SparsifyConfig, sparsify

X = np.random.default_rng(7).standard_normal((3, 8, 8, 8)).astype(np.float32)


def _by_layer(model):
    return {l.layer: l for l in inspect_layers(model)}


def test_stage_is_registered_and_config_round_trips():
    entry = get_stage("sparsify")
    assert entry.config_type is SparsifyConfig
    cfg = SparsifyConfig(permute=True, exclude=("head",), min_channels=8)
    assert SparsifyConfig.from_json(cfg.to_json()) == cfg
    with pytest.raises(ConfigError):
        SparsifyConfig(op_types=("Relu",))
    with pytest.raises(ConfigError):
        SparsifyConfig(min_channels=2)
    with pytest.raises(ConfigError):
        SparsifyConfig(include="conv*")  # a string, not a list of patterns


def test_prunes_eligible_layers_and_lists_the_rest():
    model = conv_block()
    result = sparsify(model, SparsifyConfig(min_channels=16))
    rep = result.report
    layers = _by_layer(result.model)
    assert {r["layer"] for r in rep["layers"]} == {"conv2", "fc", "head"}
    for name in ("conv2", "fc", "head"):
        assert layers[name].follows_2to4 and layers[name].trt_eligible
        assert layers[name].sparsity == pytest.approx(0.5, abs=0.01)
    reasons = {s["layer"]: s["reason"] for s in rep["skipped"]}
    assert "depthwise" in reasons["dw"]
    assert "min_channels" in reasons["conv1"]
    assert rep["pruning_rate_of_pruned_layers"] == pytest.approx(0.5, abs=0.01)
    assert 0.5 < rep["layers"][0]["retained_magnitude"] < 1.0
    json.dumps(rep)  # the report is JSON-serialisable
    # the input model is untouched
    assert not _by_layer(model)["conv2"].follows_2to4
    onnx.checker.check_model(result.model)


def test_include_exclude_and_op_types():
    model = conv_block()
    rep = sparsify(model, SparsifyConfig(exclude=("head",))).report
    assert "head" not in {r["layer"] for r in rep["layers"]}
    rep = sparsify(model, SparsifyConfig(include=("conv*",))).report
    assert {r["layer"] for r in rep["layers"]} == {"conv2"}
    rep = sparsify(model, SparsifyConfig(op_types=("MatMul",))).report
    assert {r["layer"] for r in rep["layers"]} == {"head"}


@pytest.mark.parametrize("residual", [False, True])
def test_permutation_keeps_the_function_and_more_magnitude(residual):
    model = conv_block(residual=residual)
    permuted, rep = sparsify_onnx(model, PruneOptions(permute=True, min_channels=16), apply_masks=False)
    rows = {r["layer"]: r for r in rep["layers"]}
    # conv2's channels come from conv1 through BN, Clip, a depthwise conv and a per-channel Mul
    assert rows["conv2"]["permutation"].startswith("applied")
    assert rows["head"]["permutation"].startswith("applied")
    if residual:
        assert "consumers" in rows["fc"]["permutation"] or "Add" in rows["fc"]["permutation"]
    else:
        assert rows["fc"]["permutation"].startswith("applied")
    for r in rep["layers"]:
        assert r["retained_magnitude_permuted"] >= r["retained_magnitude"] - 1e-9
    (a,), (b,) = run(model, {"x": X}), run(permuted, {"x": X})
    np.testing.assert_allclose(b, a, atol=1e-4, rtol=1e-4)
    # the model only changed where the permutation went: conv1's weight rows are a permutation
    w_old = initializer_array(model, "w1")
    conv1 = next(n for n in permuted.graph.node if n.name == "conv1")
    w_new = initializer_array(permuted, conv1.input[1])
    assert sorted(map(tuple, w_old.reshape(len(w_old), -1))) == sorted(map(tuple, w_new.reshape(len(w_new), -1)))
    # and pruning after the permutation keeps at least as much magnitude as pruning without
    pruned, rep2 = sparsify_onnx(model, PruneOptions(permute=True, min_channels=16))
    assert rep2["mean_retained_magnitude_permuted"] >= rep2["mean_retained_magnitude"]
    assert all(l.follows_2to4 for l in inspect_layers(pruned) if l.layer in ("conv2", "fc", "head"))


@pytest.mark.parametrize("trans_b", [0, 1])
def test_gemm_layouts_prune_along_the_reduction_axis(trans_b):
    model = gemm_pair(trans_b)
    pruned, rep = sparsify_onnx(model, PruneOptions(min_channels=16, permute=True))
    w2 = initializer_array(pruned, pruned.graph.node[2].input[1])
    # reduction axis K is axis 0 of [K, N] and axis 1 of [N, K]
    groups = (w2 if trans_b else w2.T).reshape(-1, 4)
    assert (np.count_nonzero(groups == 0, axis=1) >= 2).all()
    x = np.random.default_rng(0).standard_normal((4, 32)).astype(np.float32)
    permuted, _ = sparsify_onnx(model, PruneOptions(min_channels=16, permute=True), apply_masks=False)
    np.testing.assert_allclose(run(permuted, {"x": x})[0], run(model, {"x": x})[0], atol=1e-5)


def test_matmul_mlp_permutes_through_bias_add():
    model = mlp()
    x = np.random.default_rng(0).standard_normal((2, 5, 32)).astype(np.float32)
    permuted, rep = sparsify_onnx(model, PruneOptions(min_channels=16, permute=True), apply_masks=False)
    rows = {r["layer"]: r for r in rep["layers"]}
    assert rows["fc2"]["permutation"] == "applied through act <- bias1 <- fc1"
    np.testing.assert_allclose(run(permuted, {"x": x})[0], run(model, {"x": x})[0], atol=1e-5)


@pytest.mark.parametrize("float_weights", [False, True])
def test_qdq_models_are_inspected_and_pruned_in_the_quantized_domain(float_weights):
    model = qdq_conv(float_weights)
    before = _by_layer(model)["qconv"]
    assert before.quantized and not before.follows_2to4 and before.trt_eligible
    pruned, rep = sparsify_onnx(model, PruneOptions(min_channels=16))
    after = _by_layer(pruned)["qconv"]
    assert after.follows_2to4 and after.quantized
    stored = initializer_array(pruned, rep["layers"][0]["weight"] if not float_weights else pruned.graph.node[2].input[0])
    assert stored.dtype == (np.float32 if float_weights else np.int8)
    x = np.random.default_rng(0).standard_normal((1, 16, 8, 8)).astype(np.float32)
    assert np.isfinite(run(pruned, {"x": x})[0]).all()


def test_inspect_reports_non_constant_and_odd_layers():
    from onnx import TensorProto, helper

    nodes = [helper.make_node("MatMul", ["a", "b"], ["y"], name="attn")]
    graph = helper.make_graph(
        nodes, "g",
        [helper.make_tensor_value_info("a", TensorProto.FLOAT, [2, 8]), helper.make_tensor_value_info("b", TensorProto.FLOAT, [8, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 4])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    (info,) = inspect_layers(model)
    assert info.shape is None and "not constant" in info.reason
    assert summarize([info])["layers_with_constant_weights"] == 0
    # no float weights at all: nothing to prune is an error, not an empty report
    with pytest.raises(ModelError, match="no float weights"):
        sparsify(model, SparsifyConfig())


def test_stage_rejects_non_onnx():
    with pytest.raises(ModelError):
        sparsify(object(), SparsifyConfig())


def test_cli_sparsify_then_inspect(tmp_path):
    src = save_model(conv_block(), tmp_path / "m.onnx")
    out, report = tmp_path / "s.onnx", tmp_path / "r.json"
    proc = cli("sparsify", str(src), "-o", str(out), "--permute", "--report", str(report), check=True)
    assert "pruned 3 layers" in proc.stdout
    assert json.loads(report.read_text())["layers_permuted"] >= 2
    proc = cli("inspect", str(out), "--json", check=True)
    data = json.loads(proc.stdout)
    assert data["summary"]["layers_sparse_ready"] == 3
    assert {l["layer"] for l in data["layers"] if l["follows_2to4"]} == {"conv2", "fc", "head"}
    table = cli("inspect", str(out), check=True).stdout
    assert "depthwise" in table and "3 ready for sparse kernels" in table
    bad = cli("sparsify", str(tmp_path / "missing.onnx"), "-o", str(out))
    assert bad.returncode == 2 and "not found" in bad.stderr


def test_compress_job_runs_the_sparsify_stage_from_a_recipe(tmp_path):
    src = save_model(conv_block(), tmp_path / "m.onnx")
    recipe = tmp_path / "recipe.json"
    # random weights pruned one-shot: the recipe's plumbing is under test, not accuracy (no per-kind verdict)
    recipe.write_text(json.dumps({"stages": [{"stage": "sparsify", "permute": True, "exclude": ["head"]}], "data": "random:4", "compare": {"default_thresholds": False}}))
    cli("compress", str(src), "--recipe", str(recipe), "--name", "sp", cwd=tmp_path, check=True)
    report = json.loads((tmp_path / "runs" / "sp" / "report.json").read_text())
    normalize, stage = report["stages"]
    assert normalize["name"] == "normalize" and stage["name"] == "sparsify"
    pruned = {r["layer"] for r in stage["report"]["layers"]}
    assert pruned == {"conv2", "fc"}
    model = onnx.load(str(tmp_path / "runs" / "sp" / "artifacts" / "model.onnx"))
    ready = {l.layer for l in inspect_layers(model) if l.sparse_ready}
    assert ready == {"conv2", "fc"}
    # the job's pruning rate counts the weights the stage pruned, over all of the original's weights
    rate = report["metrics"]["pruning_rate"]
    assert rate["pruned"] == stage["report"]["zeros_added"] > 0
    assert rate["percent"] == pytest.approx(100 * rate["pruned"] / rate["total"])


from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402


@settings(max_examples=12, deadline=None)
@given(st.integers(0, 10_000), st.sampled_from([16, 20, 32, 44]), st.sampled_from([16, 24, 32]), st.booleans())
def test_permutation_preserves_the_function_property(seed, c_mid, c_out, residual):
    model = conv_block(seed=seed, c_mid=c_mid, c_out=c_out, residual=residual)
    permuted, rep = sparsify_onnx(model, PruneOptions(permute=True, min_channels=16, seed=seed, permute_rounds=3), apply_masks=False)
    x = np.random.default_rng(seed).standard_normal((2, 8, 8, 8)).astype(np.float32)
    (a,), (b,) = run(model, {"x": x}), run(permuted, {"x": x})
    np.testing.assert_allclose(b, a, atol=1e-4 * max(1.0, float(np.abs(a).max())), rtol=1e-4)
    assert rep["layers_permuted"] >= 1
