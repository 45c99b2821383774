"""The ``finetune`` stage inside ``compress``: the ONNX side's 2:4 masks carried to the torch model,
distilled label-free, exported, and quantized after; refused where the job has no torch model."""
from __future__ import annotations

from pathlib import Path

import onnx
import pytest

torch = pytest.importorskip("torch")

from trtcompress.contracts import measure  # noqa: E402
from trtcompress.errors import ConfigError  # noqa: E402
from trtcompress.job import CompressConfig, compress, stage_config  # noqa: E402
from trtcompress.torch_export import ExportConfig  # noqa: E402
from trtcompress.zoo import onnx_path  # noqa: E402
from trtcompress.zoo.fashion_mnist import dataset_dir  # noqa: E402

FASHION = Path(__file__).resolve().parents[2] / "calibration" / "fashion_mnist"


def test_sparsify_finetune_quantize_keeps_masks_and_recovers_agreement(tmp_path):
    if not any((dataset_dir() / f).exists() for f in ("t10k-labels-idx1-ubyte.gz", "t10k-labels-idx1-ubyte")):
        pytest.skip("needs the Fashion-MNIST Debian package: apt-get install dataset-fashion-mnist")
    steps = 20
    stages = (
        stage_config("sparsify"),
        # label-free on the job's calibration half of the npz folder; agreement measured on test images
        stage_config("finetune", {"steps": steps, "lr": 1e-3, "batch_size": 32, "eval": "fashion-mnist:test:500", "progress": False, "threads": 1}),
        stage_config("quantize"),
    )
    config = CompressConfig(
        model="trtcompress.zoo:fashion_cnn", name="ft", runs_dir=str(tmp_path), stages=stages,
        export=ExportConfig(inputs=("x:1x1x28x28",), exporter="torchscript"),
        data=str(FASHION), calib_from_data="split", skip_bench=True,
    )
    result = compress(config)
    by_name = {s["name"]: s for s in result.report["stages"]}
    pruned = by_name["sparsify"]["report"]["layers_pruned"]
    assert pruned >= 4
    ft = by_name["finetune"]["report"]
    assert ft["labelled"] is False and ft["alpha"] == 0.0
    assert ft["structure"]["pruned_layers"] == pruned
    # the masks survive training, the export and quantize: 2:4 holds in the final model's weights
    assert measure(onnx.load(str(result.model_path)), ["2:4"])["2:4"] == pruned
    assert measure(onnx.load(str(result.model_path)), ["quantized"])["quantized"] > 0
    # distillation brings the student closer to the dense model on held-out test images
    ev = ft["eval"]
    assert ev["samples"] == 500
    assert ev["agreement_after"] > ev["agreement_before"]
    # the loss curve the report plots: [step, loss] up to the last step, going down
    curve = ft["loss_curve"]
    assert [s for s, _ in curve] == sorted(s for s, _ in curve) and curve[-1][0] == ft["steps"] == steps
    assert curve[-1][1] < curve[0][1]


def test_finetune_on_an_onnx_model_is_refused_before_anything_runs(tmp_path):
    stages = (stage_config("sparsify"), stage_config("finetune"))
    with pytest.raises(ConfigError, match="retrains the torch model.*is ONNX"):
        CompressConfig(model=str(onnx_path("fashion_cnn")), stages=stages, runs_dir=str(tmp_path))
    assert not any(tmp_path.iterdir())


def test_finetune_order_and_labels_are_checked_when_the_config_is_built():
    with pytest.raises(ConfigError, match="finetune.*after 'quantize'"):
        CompressConfig(model="trtcompress.zoo:fashion_cnn", stages=(stage_config("quantize"), stage_config("finetune")))
    with pytest.raises(ConfigError, match="no labels"):
        stage_config("finetune", {"train": ["photos:calib"], "alpha": 0.5})
    assert stage_config("finetune", {"train": ["fashion-mnist:train:512"], "alpha": 0.5}).alpha == 0.5
