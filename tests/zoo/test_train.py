"""The training script: deterministic, hooks for fine-tuning, and the export the shipped files came from."""
from __future__ import annotations

import collections
from pathlib import Path

import numpy as np
import pytest

from trtcompress.zoo.fashion_mnist import dataset_dir

pytestmark = [
    pytest.mark.torch,
    pytest.mark.skipif(not (dataset_dir() / "train-images-idx3-ubyte.gz").exists(), reason="apt-get install dataset-fashion-mnist"),
]


def test_training_is_deterministic_and_restores_torch_settings() -> None:
    import torch

    from trtcompress.zoo.train import TrainSpec, train

    spec = TrainSpec(epochs=1, batch_size=64, lr=3e-3, weight_decay=5e-4)
    before = torch.get_num_threads(), torch.are_deterministic_algorithms_enabled()
    logs: list[str] = []
    a = train("fashion_cnn", spec, threads=1, log=logs.append, limit=256).state_dict()
    b = train("fashion_cnn", spec, threads=1, log=lambda s: None, limit=256).state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert (torch.get_num_threads(), torch.are_deterministic_algorithms_enabled()) == before
    assert logs and logs[-1].startswith("fashion_cnn: epoch 1/1 loss")
    c = train("fashion_cnn", TrainSpec(epochs=1, batch_size=64, lr=3e-3, weight_decay=5e-4, seed=1), threads=1, log=lambda s: None, limit=256)
    assert not torch.equal(c.state_dict()["head.1.weight"], a["head.1.weight"])


def test_fit_hooks_keep_a_mask_and_replace_the_loss() -> None:
    import torch

    from trtcompress.zoo import fashion_cnn
    from trtcompress.zoo.train import TrainSpec, fit

    model = fashion_cnn(pretrained=False)
    weight = model.head[1].weight
    mask = torch.ones_like(weight)
    mask.view(-1, 4)[:, :2] = 0  # a 2:4 pattern along the input dimension
    calls = []

    def after_step(m):
        with torch.no_grad():
            m.head[1].weight.mul_(mask)
        calls.append(1)

    def loss(logits, x, y):
        calls.append(0)
        return torch.nn.functional.cross_entropy(logits, y)

    fit(model, TrainSpec(epochs=1, batch_size=64, lr=1e-3, weight_decay=0.0), threads=1, log=lambda s: None, limit=128, loss=loss, after_step=after_step)
    assert calls == [0, 1, 0, 1]
    assert not model.training
    assert (model.head[1].weight[mask == 0] == 0).all() and (model.head[1].weight[mask == 1] != 0).all()


@pytest.mark.parametrize("name", ["fashion_cnn", "fashion_vit"])
def test_export_reproduces_the_shipped_onnx(name: str, tmp_path: Path) -> None:
    import onnx
    import onnxruntime as ort

    from trtcompress import zoo
    from trtcompress.zoo.train import export_onnx

    path = export_onnx(getattr(zoo, name)(), tmp_path / f"{name}.onnx")
    shipped = onnx.load(str(zoo.onnx_path(name)))
    fresh = onnx.load(str(path))
    assert collections.Counter(n.op_type for n in fresh.graph.node) == collections.Counter(n.op_type for n in shipped.graph.node)
    x, _ = zoo.fashion_mnist("test", limit=32)
    run = lambda p: ort.InferenceSession(str(p), providers=["CPUExecutionProvider"]).run(["logits"], {"x": x})[0]  # noqa: E731
    np.testing.assert_allclose(run(path), run(zoo.onnx_path(name)), rtol=1e-5, atol=1e-5)
