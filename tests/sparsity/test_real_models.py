"""Sparsify on real weights and real data: the shipped Fashion-MNIST CNN and EfficientNet-Lite0."""
from __future__ import annotations

import numpy as np
import pytest

from .graphs import run

from trtcompress import zoo
from trtcompress.model_io import load_model
from trtcompress.sparsity.inspect import inspect_layers
from trtcompress.sparsity.prune import PruneOptions, sparsify_onnx


def _photos(n: int = 4) -> np.ndarray:
    """Real photos (the zoo's eval split, no augmentation), EfficientNet-Lite preprocessing."""
    return next(zoo.photo_batch("eval", "efficientnet-lite", augment=False, batch_size=n))


def test_fashion_cnn_onnx_pruned_and_permuted():
    """The shipped Fashion-MNIST CNN (ONNX, trained here): residual blocks stop some permutations."""
    model = load_model(zoo.onnx_path("fashion_cnn"))
    x, y = zoo.fashion_mnist("test", limit=1000)
    feed = {model.graph.input[0].name: x}
    ref = run(model, feed)[0]
    permuted, rep = sparsify_onnx(model, PruneOptions(permute=True), apply_masks=False)
    np.testing.assert_allclose(run(permuted, feed)[0], ref, atol=1e-4)
    reasons = [r["permutation"] for r in rep["layers"]]
    assert sum(r.startswith("applied") for r in reasons) == 2  # the second conv of each residual block
    assert any("consumers" in r for r in reasons) and any("Flatten" in r for r in reasons)
    pruned, rep = sparsify_onnx(model, PruneOptions(permute=True))
    ready = [l.layer for l in inspect_layers(pruned) if l.sparse_ready]
    assert len(ready) == rep["layers_pruned"] == 6
    dense_acc = float((ref.argmax(1) == y).mean())
    pruned_acc = float((run(pruned, feed)[0].argmax(1) == y).mean())
    assert dense_acc > 0.88
    assert dense_acc - 0.06 < pruned_acc <= dense_acc + 0.01  # one-shot 2:4 costs a little, not everything


@pytest.fixture(scope="module")
def effnet(efficientnet_onnx):
    """The session's EfficientNet-Lite0 export (tests/conftest.py), loaded."""
    return load_model(efficientnet_onnx)


@pytest.mark.torch
@pytest.mark.slow
def test_effnet_permutation_preserves_the_function(effnet):
    x = _photos()
    feed = {effnet.graph.input[0].name: x}
    permuted, rep = sparsify_onnx(effnet, PruneOptions(permute=True, permute_rounds=4), apply_masks=False)
    assert rep["layers_permuted"] >= 15  # every projection conv and the classifier
    ref, out = run(effnet, feed)[0], run(permuted, feed)[0]
    assert np.abs(out - ref).max() < 1e-4 * max(1.0, np.abs(ref).max())
    assert (out.argmax(1) == ref.argmax(1)).all()
    assert rep["mean_retained_magnitude_permuted"] > rep["mean_retained_magnitude"]


@pytest.mark.torch
@pytest.mark.slow
def test_effnet_pruned_follows_2to4_where_tensorrt_can_use_it(effnet):
    from trtcompress.sparsity.inspect import summarize
    from trtcompress.stages.sparsify import SparsifyConfig, sparsify

    result = sparsify(effnet, SparsifyConfig())
    layers = inspect_layers(result.model)
    s = summarize(layers)
    assert s["layers_sparse_ready"] == result.report["layers_pruned"] == 33  # 1x1 convs and the classifier
    dense = [l for l in layers if not l.trt_eligible]
    assert len(dense) == 17 and all("depthwise" in l.reason or "not a multiple of 4" in l.reason for l in dense)
    x = _photos(2)
    out = run(result.model, {effnet.graph.input[0].name: x})[0]
    assert np.isfinite(out).all()
