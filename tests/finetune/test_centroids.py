"""Trained centroids after ``share`` (Deep Compression's third step): a centroid's gradient is the sum
of its weights' gradients, the indices and the pruned zeros survive training and the export, the
INT8 grid's levels stay integers with ±127 kept, the written model packs and unpacks bit-exactly,
and an interrupted run resumes to the same codebooks."""
from __future__ import annotations

import copy

import numpy as np
import onnx
import pytest

torch = pytest.importorskip("torch")

from trtcompress.errors import ConfigError
from trtcompress.finetune.centroids import attach_centroids
from trtcompress.sessions import SessionConfig, open_session
from trtcompress.share import ShareConfig
from trtcompress.share.onnx_share import share_onnx
from trtcompress.share.pack import pack_bytes, unpack_bytes
from trtcompress.share.read import read_shared
from trtcompress.stages.finetune import FinetuneStageConfig, finetune
from trtcompress.torch_export import ExportConfig, export_module

FACTORY = '''import torch


def make():
    m = torch.nn.Sequential(
        torch.nn.Flatten(), torch.nn.Linear(64, 128), torch.nn.ReLU(), torch.nn.Dropout(0.1),
        torch.nn.Linear(128, 128), torch.nn.ReLU(), torch.nn.Linear(128, 10),
    )
    m.load_state_dict(torch.load({path!r}, weights_only=True))
    return m.eval()
'''


@pytest.fixture(scope="module")
def exported(teacher, tmp_path_factory):
    """The digits teacher as ONNX (Gemm weights, nothing folded) and a factory file that rebuilds it."""
    d = tmp_path_factory.mktemp("centroids")
    torch.save(teacher.state_dict(), d / "teacher.pt")
    (d / "factory.py").write_text(FACTORY.format(path=str(d / "teacher.pt")))
    export_module(teacher, d / "teacher.onnx", ExportConfig(inputs=("x:1x1x8x8",), exporter="torchscript"))
    return onnx.load(d / "teacher.onnx"), f"{d / 'factory.py'}:make"


SHARINGS = {
    "layer": ShareConfig(bits=3, prune=0.4, min_size=256),
    "channel": ShareConfig(bits=2, prune=0.4, min_size=256, granularity="channel"),
    "int8-grid": ShareConfig(bits=3, prune=0.4, min_size=256, int8_grid=True),
}


def _members_sum(grad, idx, factor, k, per_channel):
    """Σ over each cluster's weights of their gradient, in codebook units (the weight is book[idx] * factor)."""
    g = (grad * factor).reshape(len(idx), -1)
    i = idx.reshape(len(idx), -1)
    if per_channel:
        return torch.zeros(len(idx), k, dtype=g.dtype).scatter_add_(1, i, g)
    return torch.zeros(k, dtype=g.dtype).index_add_(0, i.reshape(-1), g.reshape(-1))


@pytest.mark.parametrize("form", list(SHARINGS))
def test_centroid_gradient_is_the_sum_of_its_weights_gradients(teacher, digits, exported, form):
    model, _ = exported
    shared, _ = share_onnx(model, SHARINGS[form])
    layers = read_shared(shared)
    assert len(layers) == 3
    student = copy.deepcopy(teacher)
    cset, report = attach_centroids(student, layers)
    x, y = next(iter(digits[1]))
    # nothing is folded in this model: the student starts as exactly the shared ONNX model
    assert all(r["factor"] == "scale" for r in report.values())
    sess = open_session(shared, SessionConfig(threads=1))
    np.testing.assert_allclose(student(x).detach().numpy(), sess.run(None, {sess.get_inputs()[0].name: x.numpy()})[0], rtol=1e-4, atol=1e-5)
    # a dense copy holding the decoded weights gives each weight's own gradient
    dense = copy.deepcopy(teacher)
    for e in cset.entries:
        dense.get_submodule(e.name).weight.data.copy_(e.module.weight.detach())
    torch.nn.functional.cross_entropy(student(x), y).backward()
    torch.nn.functional.cross_entropy(dense(x), y).backward()
    for e in cset.entries:
        m = e.module
        expected = _members_sum(dense.get_submodule(e.name).weight.grad, m.weight_indices, m.weight_factor, e.layer.k, e.layer.per_channel)
        live = m.weight_live
        torch.testing.assert_close(m.weight_centroids.grad[live], expected[live], rtol=1e-5, atol=1e-8)
        assert not m.weight_centroids.grad[~live].any()  # the zero centroid (and ±127 on the grid) never train
        assert int((~live).sum()) >= (1 if not e.layer.per_channel else len(live))


def _run(model, factory, **kw):
    options = {"torch_model": factory, "train": ("digits:train",), "eval": "digits:test", "steps": 24, "lr": 3e-3, "batch_size": 64,
               "augment": False, "norm_samples": 0, "inputs": ("x:1x1x8x8",), "exporter": "torchscript", "progress": False, "threads": 1, "seed": 1}
    options.update(kw)
    return finetune(model, FinetuneStageConfig(**options))


def _accuracy(model, digits) -> float:
    sess = open_session(model, SessionConfig(threads=1))
    right = n = 0
    for x, y in digits[1]:
        right += int((sess.run(None, {sess.get_inputs()[0].name: x.numpy()})[0].argmax(1) == y.numpy()).sum())
        n += len(y)
    return right / n


@pytest.mark.parametrize("form", ["layer", "int8-grid"])
def test_finetune_after_share_keeps_indices_and_zeros_and_packs_exactly(digits, exported, form, tmp_path):
    model, factory = exported
    shared, _ = share_onnx(model, SHARINGS[form].replace(bits=2, prune=0.8))
    result = _run(shared, factory, lr=1e-3, steps=40)
    before, after = read_shared(shared), read_shared(result.model)
    assert len(after) == len(before) == 3
    for a, b in zip(before, after):
        assert np.array_equal(a.idx, b.idx)  # the same indices, written back
        wa, wb = a.decoded(), b.decoded()
        assert np.array_equal(wb == 0, wa == 0) and (wa == 0).mean() > 0.79  # pruned weights stay exactly zero
        if form == "int8-grid":  # trained levels snapped back onto the grid, ±127 carrying each channel's scale
            assert np.array_equal(b.book, np.round(b.book)) and np.abs(b.book).max() == 127
            units = np.abs(wb / b.scale[:, None])
            np.testing.assert_allclose(units.max(axis=1)[units.max(axis=1) > 0], 127, rtol=1e-6)
    assert any(not np.array_equal(a.book, b.book) for a, b in zip(before, after))  # the centroids trained
    ev = result.report["eval"]
    assert ev["agreement_after"] > ev["agreement_before"]  # distillation brings the student closer to the teacher
    # the written ONNX computes what the trained student computed
    assert abs(_accuracy(result.model, digits) - ev["accuracy_after"]) <= 1 / ev["samples"]
    assert max(l["rel_error"] for l in result.report["structure"]["centroids"]["written"]) < 1e-6
    data = result.model.SerializeToString()
    art, report = pack_bytes(data)
    assert unpack_bytes(art) == data and report["index_tensors"] == 3
    if form == "int8-grid":  # quantize then stores exactly the trained levels as the int8 weights
        from onnx import numpy_helper

        from trtcompress.stages.quantize import QuantizeConfig, quantize

        np.savez(tmp_path / "calib.npz", x=next(iter(digits[0]))[0].numpy())
        q = quantize(result.model, QuantizeConfig(calib=str(tmp_path / "calib.npz"), weights="int8")).model
        int8 = {t.name: numpy_helper.to_array(t) for t in q.graph.initializer if t.data_type == onnx.TensorProto.INT8 and len(t.dims) >= 2}
        for b in after:
            assert np.array_equal(int8[b.weight_name + "_int8"], b.book[b.idx].astype(np.int8)), b.node


class _Crash(Exception):
    pass


def test_interrupted_centroid_training_resumes_to_the_same_codebooks(exported, tmp_path, monkeypatch):
    model, factory = exported
    shared, _ = share_onnx(model, SHARINGS["int8-grid"])
    whole = read_shared(_run(shared, factory, eval=None, steps=20).model)
    from trtcompress.finetune import trainer

    real, calls = trainer.distillation_loss, []

    def crashing(*a, **kw):
        calls.append(1)
        if len(calls) > 13:
            raise _Crash
        return real(*a, **kw)

    ck = str(tmp_path / "ck")
    monkeypatch.setattr(trainer, "distillation_loss", crashing)
    with pytest.raises(_Crash):
        _run(shared, factory, eval=None, steps=20, checkpoint_dir=ck, checkpoint_every=5)
    monkeypatch.setattr(trainer, "distillation_loss", real)
    resumed = read_shared(_run(shared, factory, eval=None, steps=20, checkpoint_dir=ck, checkpoint_every=5, resume=True).model)
    for a, b in zip(whole, resumed):
        assert np.array_equal(a.idx, b.idx) and np.array_equal(a.book, b.book) and np.array_equal(a.scale, b.scale)


def test_centroid_options_are_checked():
    with pytest.raises(ConfigError, match="resume needs checkpoint_dir"):
        FinetuneStageConfig(resume=True)


def test_centroids_only_needs_shared_weights(exported):
    model, factory = exported
    with pytest.raises(ConfigError, match="no shared weight"):
        _run(model, factory, centroids_only=True, eval=None, steps=1)


@pytest.mark.slow
def test_compress_share_then_finetune_from_the_command_line(teacher, exported, tmp_path, capfd):
    """The CLI path: ``compress MODEL --recipe`` with share then finetune; the run's model keeps the
    shared weights (the pipeline's contract), with trained centroids."""
    import json

    from trtcompress.cli.main import main
    from trtcompress.finetune import open_training_data

    _, factory = exported
    x = np.concatenate([b[0].numpy() for b in open_training_data("digits:test", 512, shuffle=False)])
    np.savez(tmp_path / "eval.npz", x=x[:200])
    np.savez(tmp_path / "calib.npz", x=x[200:])
    recipe = {"stages": [{"stage": "share", "bits": 2, "prune": 0.8, "min_size": 256},
                         {"stage": "finetune", "train": ["digits:train"], "steps": 10, "lr": 1e-3, "batch_size": 64, "augment": False,
                          "norm_samples": 0, "threads": 1, "progress": False}]}
    (tmp_path / "r.json").write_text(json.dumps(recipe))
    capfd.readouterr()
    rc = main(["compress", factory, "--recipe", str(tmp_path / "r.json"), "--input", "x:1x1x8x8", "--data", str(tmp_path / "eval.npz"),
               "--calib", str(tmp_path / "calib.npz"), "--exporter", "torchscript", "--no-bench", "--name", "c", "--runs-dir", str(tmp_path / "runs"), "--json"])
    _, err = capfd.readouterr()
    assert rc in (0, 1), err  # 1: the job ran and its accuracy verdict failed (2 bits, 80% pruned)
    run = tmp_path / "runs" / "c"
    report = json.loads((run / "report.json").read_text())
    stages = {s["name"]: s["report"] for s in report["stages"]}
    assert stages["finetune"]["steps"] == 10 and len(stages["finetune"]["structure"]["centroids"]["written"]) == 3
    written = {p.name: len(read_shared(onnx.load(str(p)))) for p in (run / "artifacts").rglob("*.onnx")}
    assert 3 in written.values(), written  # the compressed model, beside the FP32 baseline


def test_int8_grid_student_starts_as_the_shared_model_with_batchnorm_folded():
    """The Fashion CNN's BatchNorms are folded into the ONNX weights, not the torch ones: on the INT8
    grid the torch-side channel factor (the module's own max |w| / 127) is exact all the same."""
    from trtcompress.stages.normalize import NormalizeConfig, normalize
    from trtcompress.zoo import fashion_cnn, onnx_path
    from trtcompress.zoo.fashion_mnist import fashion_mnist

    base = normalize(onnx.load(onnx_path("fashion_cnn")), NormalizeConfig()).model
    shared, _ = share_onnx(base, ShareConfig(bits=4, min_size=256, int8_grid=True))
    student = fashion_cnn()
    _, report = attach_centroids(student, read_shared(shared))
    assert sum(r["factor"].startswith("channel max") for r in report.values()) == 6  # the six folded convolutions
    x, _ = fashion_mnist("test", 64)
    sess = open_session(shared, SessionConfig(threads=1))
    with torch.no_grad():
        got = student(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(got, sess.run(None, {sess.get_inputs()[0].name: x})[0], rtol=1e-4, atol=1e-4)
