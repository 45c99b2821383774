"""Weight sharing composed with the other stages on the Fashion CNN (BatchNorms folded into the ONNX
weights, not the torch ones): low-rank then share then trained centroids finds and trains the
factorised pair like any other shared layer; 2:4 then share then trained centroids then quantize
keeps the 2:4 pattern at every step (the zero centroid never moves) and stores exactly the shared
levels as int8 weights. Held-out images (test 2000..2999) are used by no stage."""
from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

torch = pytest.importorskip("torch")

from trtcompress.contracts import measure
from trtcompress.quant.trt_rules import check_trt_qdq
from trtcompress.sessions import SessionConfig, open_session
from trtcompress.share import ShareConfig
from trtcompress.share.onnx_share import share_onnx
from trtcompress.share.pack import pack_bytes, unpack_bytes
from trtcompress.share.read import read_shared
from trtcompress.sparsity.masks import groups_violating
from trtcompress.stages.finetune import FinetuneStageConfig, finetune
from trtcompress.stages.lowrank import LowRankConfig, lowrank
from trtcompress.stages.normalize import NormalizeConfig, normalize
from trtcompress.stages.quantize import QuantizeConfig, quantize
from trtcompress.stages.sparsify import SparsifyConfig, sparsify
from trtcompress.zoo import fashion_mnist, onnx_path

EVAL = 128  # the finetune report's eval slice: test[:128]


@pytest.fixture(scope="module")
def base():
    return normalize(onnx.load(onnx_path("fashion_cnn")), NormalizeConfig()).model


@pytest.fixture(scope="module")
def heldout():
    x, y = fashion_mnist("test", limit=3000)
    return x[2000:], y[2000:]


def _finetune(model, **kw):
    options = {"torch_model": "trtcompress.zoo:fashion_cnn", "train": ("fashion-mnist:train",), "limit": 1280, "steps": 20, "lr": 1e-3,
               "batch_size": 64, "eval": "fashion-mnist:test", "eval_limit": EVAL, "augment": False, "norm_samples": 0,
               "inputs": ("x:1x1x28x28",), "exporter": "torchscript", "progress": False, "threads": 1, "seed": 0}
    options.update(kw)
    return finetune(model, FinetuneStageConfig(**options))


def _logits(model, x) -> np.ndarray:
    sess = open_session(model, SessionConfig(threads=1, optimization="basic"))
    return sess.run(None, {sess.get_inputs()[0].name: x})[0]


def _accuracy(model, x, y) -> float:
    return float(np.mean(_logits(model, x).argmax(1) == y))


def test_lowrank_then_share_then_trained_centroids(base, heldout):
    # the 3136-wide Gemm stays dense (its SVD is most of the stage's time): shared, not factorised
    factored = lowrank(base, LowRankConfig(energy=0.9, exclude=("/head/head.1/*",))).model
    shared, _ = share_onnx(factored, ShareConfig(bits=2, min_size=256))  # the stage without its size report's packing
    result = _finetune(shared)
    structure = result.report["structure"]
    assert structure["onnx_lowrank_pairs"] == 7 and len(structure["factorised"]) == 7
    trained = structure["centroids"]["layers"]
    assert len(trained) == 13 and sum(r["module"].endswith((".first", ".second")) for r in trained.values()) == 12
    assert trained["/head/head.1/Gemm"]["module"] == "head.1"
    # the written ONNX computes what the trained student computed (the BatchNorms folded again)
    x, y = fashion_mnist("test", limit=EVAL)
    ev = result.report["eval"]
    assert abs(ev["accuracy_after"] - _accuracy(result.model, x, y)) <= 1 / EVAL
    before, after = read_shared(shared), read_shared(result.model)
    assert len(after) == len(before) == 13
    for a, b in zip(before, after):
        assert np.array_equal(a.idx, b.idx), a.node  # the indices share chose, unchanged
        assert not b.int8_grid  # float codebooks, scaled by the fold where one was kept
    assert max(w["rel_error"] for w in structure["centroids"]["written"]) < 1e-6
    written = structure["centroids"]["written"]
    assert all(w["codebook"] == "float" and "int8_levels" not in w for w in written)
    assert sum(w["scale_written"] for w in written) >= 6  # the folded BatchNorms: float codebooks times a scale, not the INT8 grid
    data = result.model.SerializeToString()
    art, packed = pack_bytes(data)
    assert unpack_bytes(art) == data and packed["index_tensors"] == 13
    hx, hy = heldout
    assert _accuracy(result.model, hx, hy) >= _accuracy(shared, hx, hy)  # trained centroids recover what one-shot sharing lost


def _layout(layer, stored: np.ndarray) -> np.ndarray:
    """An ONNX weight in the torch layout of ``layer`` (a SharedLayer)."""
    return stored.T if layer.transposed else stored


def test_2to4_then_share_then_trained_centroids_then_quantize(base, heldout, tmp_path):
    sparse = sparsify(base, SparsifyConfig()).model
    count = measure(sparse, ["2:4"])["2:4"]
    assert count >= 6
    dense = {t.name: numpy_helper.to_array(t) for t in sparse.graph.initializer}
    shared, _ = share_onnx(sparse, ShareConfig(bits=4, min_size=256, int8_grid=True))
    layers = read_shared(shared)
    sparse_layers = [l for l in layers if l.idx.shape[1] % 4 == 0 and groups_violating(_layout(l, dense[l.weight_name]), 1) == 0]
    assert len(sparse_layers) >= 5
    for l in sparse_layers:  # exact zeros stay zero (the zero centroid; tiny weights may round onto it on the grid)
        w = l.decoded()
        assert l.int8_grid and not (w[_layout(l, dense[l.weight_name]) == 0]).any() and groups_violating(w, 1) == 0, l.node
    assert measure(shared, ["2:4"])["2:4"] == count  # the pipeline's contract holds through share

    result = _finetune(shared, steps=10, eval=None)
    trained = read_shared(result.model)
    assert len(trained) == len(layers)
    assert result.report["structure"]["pruned_layers"] == 0  # the shared layers train centroids, no mask needed
    for a, b in zip(layers, trained):
        assert np.array_equal(a.idx, b.idx) and b.int8_grid, a.node
        assert np.array_equal(b.decoded() == 0, a.decoded() == 0), a.node  # zeros never move
    assert any(not np.array_equal(a.book, b.book) for a, b in zip(layers, trained))  # the levels trained
    assert measure(result.model, ["2:4"])["2:4"] == count
    assert all(w["codebook"] == "int8_grid" and w["int8_levels"] <= 16 for w in result.report["structure"]["centroids"]["written"])

    x, _ = fashion_mnist("train", limit=32)
    np.savez(tmp_path / "calib.npz", x=x)
    q = quantize(result.model, QuantizeConfig(calib=str(tmp_path / "calib.npz"), weights="int8", progress=False, threads=1)).model
    check_trt_qdq(q)  # valid Q/DQ for TensorRT
    int8 = {t.name: numpy_helper.to_array(t) for t in q.graph.initializer if t.data_type == onnx.TensorProto.INT8 and len(t.dims) >= 2}
    for b in trained:
        stored = int8[b.weight_name + "_int8"]
        assert np.array_equal(_layout(b, stored), b.book[b.idx].astype(np.int8)), b.node  # exactly the trained levels
    assert measure(q, ["2:4"])["2:4"] == count  # the 2:4 pattern intact in the int8 weights
    hx, _ = heldout
    assert np.mean(_logits(q, hx).argmax(1) == _logits(result.model, hx).argmax(1)) > 0.95


@pytest.mark.slow
def test_compress_recipe_lowrank_share_finetune(tmp_path, capfd):
    """The user's path: ``compress MODEL --recipe`` with lowrank, share, finetune and quantize on the
    INT8 grid; the job's model keeps the factorised pairs' trained levels as int8 weights."""
    import json

    from trtcompress.cli.main import main

    x, _ = fashion_mnist("test", limit=3000)
    np.savez(tmp_path / "eval.npz", x=x[2000:2200])
    np.savez(tmp_path / "calib.npz", x=fashion_mnist("train", limit=64)[0])
    recipe = {"stages": [{"stage": "lowrank", "energy": 0.9, "exclude": ["/head/head.1/*"]},
                         {"stage": "share", "bits": 4, "min_size": 256, "int8_grid": True},
                         {"stage": "finetune", "train": ["fashion-mnist:train"], "limit": 1024, "steps": 10, "lr": 1e-3, "batch_size": 64,
                          "augment": False, "norm_samples": 0, "threads": 1, "progress": False},
                         {"stage": "quantize", "weights": "int8", "progress": False, "threads": 1}]}
    (tmp_path / "r.json").write_text(json.dumps(recipe))
    capfd.readouterr()
    rc = main(["compress", "trtcompress.zoo:fashion_cnn", "--recipe", str(tmp_path / "r.json"), "--input", "x:1x1x28x28",
               "--data", str(tmp_path / "eval.npz"), "--calib", str(tmp_path / "calib.npz"), "--exporter", "torchscript", "--no-bench",
               "--name", "c", "--runs-dir", str(tmp_path / "runs"), "--json"])
    _, err = capfd.readouterr()
    assert rc in (0, 1), err  # 1: the job ran and an accuracy verdict failed
    report = json.loads((tmp_path / "runs" / "c" / "report.json").read_text())
    stages = {s["name"]: s["report"] for s in report["stages"]}
    written = stages["finetune"]["structure"]["centroids"]["written"]
    assert stages["finetune"]["structure"]["onnx_lowrank_pairs"] == 7 and len(written) == 13
    assert sum(w["codebook"] == "int8_grid" for w in written) == 13
    assert stages["quantize"]["shared_weights_decoded"] == 13
