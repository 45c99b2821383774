"""Normalisation is wired where users meet it: the single-stage verbs and ``compress`` run it first
(``--no-normalize`` turns it off), and the cleanup after the last stage ships no dead initializer,
and the TensorRT form's input centering leaves none behind even without it."""
from __future__ import annotations

import collections
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from trtcompress import zoo
from trtcompress.job import CompressConfig, compress
from trtcompress.model_io import load_model
from trtcompress.stages.normalize import NormalizeConfig, with_normalize
from trtcompress.stages.quantize import QuantizeConfig, quantize


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "trtcompress.cli.main", *args], capture_output=True, text=True, timeout=600)


def _padded_bn_model(path: Path) -> Path:
    """Pad -> Conv -> BatchNormalization -> Relu -> GlobalAveragePool -> Flatten -> Gemm, 16+ channels so sparsify prunes."""
    rng = np.random.default_rng(0)
    c = 32
    nodes = [
        helper.make_node("Pad", ["x", "pads"], ["p"], mode="constant"),
        helper.make_node("Conv", ["p", "w"], ["c"]),
        helper.make_node("BatchNormalization", ["c", "s", "b", "m", "v"], ["n"]),
        helper.make_node("Relu", ["n"], ["r"]),
        helper.make_node("Conv", ["r", "w2"], ["c2"]),
        helper.make_node("GlobalAveragePool", ["c2"], ["g"]),
        helper.make_node("Flatten", ["g"], ["f"]),
        helper.make_node("Gemm", ["f", "fc"], ["logits"], transB=1),
    ]
    inits = {"pads": np.array([0, 0, 1, 1, 0, 0, 1, 1], np.int64), "w": rng.standard_normal((c, 16, 3, 3)).astype(np.float32) * 0.2,
             "s": rng.random(c).astype(np.float32) + 0.5, "b": rng.standard_normal(c).astype(np.float32) * 0.1,
             "m": rng.standard_normal(c).astype(np.float32) * 0.1, "v": rng.random(c).astype(np.float32) + 0.5,
             "w2": rng.standard_normal((c, c, 1, 1)).astype(np.float32) * 0.2, "fc": rng.standard_normal((5, c)).astype(np.float32)}
    g = helper.make_graph(nodes, "padded", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 16, 12, 12])],
                          [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", 5])], [numpy_helper.from_array(a, n) for n, a in inits.items()])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    onnx.save(m, str(path))
    return path


def _ops(path) -> collections.Counter:
    return collections.Counter(n.op_type for n in onnx.load(str(path)).graph.node)


def _dead(model: onnx.ModelProto) -> list[str]:
    used = {i for n in model.graph.node for i in n.input} | {o.name for o in model.graph.output}
    return [t.name for t in model.graph.initializer if t.name not in used]


def test_sparsify_and_lowrank_verbs_normalize_first_unless_told_not_to(tmp_path):
    src = _padded_bn_model(tmp_path / "m.onnx")
    for verb in ("sparsify", "lowrank"):
        r = _cli(verb, str(src), "-o", str(tmp_path / f"{verb}.onnx"))
        assert r.returncode == 0, r.stderr
        assert "normalized: 8 -> 6 nodes (BatchNormalization 1, Pad 1)" in r.stdout
        assert _ops(tmp_path / f"{verb}.onnx")["Pad"] == 0 and _ops(tmp_path / f"{verb}.onnx")["BatchNormalization"] == 0
        r = _cli(verb, str(src), "-o", str(tmp_path / f"{verb}-raw.onnx"), "--no-normalize")
        assert r.returncode == 0, r.stderr
        assert "normalized" not in r.stdout and _ops(tmp_path / f"{verb}-raw.onnx")["BatchNormalization"] == 1


def test_compress_runs_normalize_first_and_cleans_up(tmp_path):
    src = _padded_bn_model(tmp_path / "m.onnx")
    base = dict(model=str(src), runs_dir=str(tmp_path / "runs"), data="random:2", skip_bench=True, stages=())
    report = compress(CompressConfig(name="on", **base)).report
    assert [s["name"] for s in report["stages"]] == ["normalize"] and report["stages"][0]["report"]["nodes_after"] == 6
    assert report["compare"]["outputs"]["logits"]["cosine_mean"] > 0.99999 and "cleanup" in report
    report = compress(CompressConfig(name="off", normalize=False, **base)).report
    assert report["stages"] == [] and "cleanup" not in report
    # a recipe that names normalize with options runs it once, with those options
    report = compress(CompressConfig(name="named", stages=(NormalizeConfig(fold_pad=False),), **{k: v for k, v in base.items() if k != "stages"})).report
    assert [s["name"] for s in report["stages"]] == ["normalize"] and report["stages"][0]["report"]["ops_removed"] == {"BatchNormalization": 1}


def test_the_bias_the_input_centering_replaces_never_ships(tmp_path):
    """Centering a one-sided input gives the first Conv a new bias; the old one must not ship,
    whether the cleanup runs after the stage or not (the TensorRT form drops it itself)."""
    x, _ = zoo.fashion_mnist("train", limit=64)
    np.savez(tmp_path / "0.npz", x=x)
    model = load_model(zoo.onnx_path("fashion_cnn"))
    cfg = QuantizeConfig(calib=str(tmp_path), sensitivity_samples=0, progress=False)
    raw = with_normalize(quantize, model, cfg, enabled=False)
    assert raw.report["centered_inputs"] and not _dead(raw.model)
    done = with_normalize(quantize, model, cfg)
    assert done.report["centered_inputs"] and not _dead(done.model)
    assert done.report["cleanup"]["initializers_removed"] == 0


def test_the_normalize_config_round_trips_and_validates():
    import pytest

    from trtcompress.errors import ConfigError

    c = NormalizeConfig(fold_pad=False, verify=True)
    assert NormalizeConfig.from_json(c.to_json()) == c
    with pytest.raises(ConfigError, match="min_opset"):
        NormalizeConfig(min_opset=9)
    assert json.loads(c.to_json())["fold_pad"] is False
