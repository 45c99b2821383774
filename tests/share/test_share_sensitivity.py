"""The share rules' model-level sensitivity (``sensitivity="model"``): a layer's error measured at the
model's outputs with only that layer shared, checked on the zoo's Fashion-MNIST CNN against outputs
computed here, outside the stage's probes."""
from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from trtcompress.cli.main import main
from trtcompress.errors import ConfigError
from trtcompress.sessions import SessionConfig, open_session
from trtcompress.share import ShareConfig
from trtcompress.share.onnx_share import share_onnx
from trtcompress.zoo.models import onnx_path

MEAN_BITS = 3.0


@pytest.fixture(scope="module")
def allocations(fp32, feeds):
    """The size rule's model, shared with bits allocated by layer error and by model error."""
    return {s: share_onnx(fp32, ShareConfig(rule="size", mean_bits=MEAN_BITS, min_size=64, sensitivity=s, threads=1), calibration=feeds)
            for s in ("layer", "model")}


def _outputs(model: onnx.ModelProto, feeds, weights: dict[str, np.ndarray] | None = None) -> list[np.ndarray]:
    """The model's outputs with ``weights`` (name -> array) in place of those initializers."""
    m = onnx.ModelProto()
    m.CopyFrom(model)
    for t in m.graph.initializer:
        if weights and t.name in weights:
            t.CopyFrom(numpy_helper.from_array(weights[t.name].astype(np.float32), t.name))
    sess = open_session(m, SessionConfig(threads=1))
    return [np.asarray(sess.run(None, f)[0], np.float64) for f in feeds]


def _decoded(shared: onnx.ModelProto, report: dict) -> dict[str, np.ndarray]:
    inits = {t.name: numpy_helper.to_array(t) for t in shared.graph.initializer}
    return {l["weight"]: inits[l["weight"] + "_codebook"][inits[l["weight"] + "_indices"].astype(np.int64)] for l in report["layers"]}


def _rel(got: list[np.ndarray], ref: list[np.ndarray]) -> float:
    return float(np.sqrt(sum(np.sum((g - r) ** 2) for g, r in zip(got, ref)) / sum(np.sum(r ** 2) for r in ref)))


def test_each_layer_error_is_the_model_output_error_with_that_layer_alone_shared(fp32, feeds, allocations):
    shared, report = allocations["model"]
    assert report["error_measured_on"].startswith("model outputs")
    ref, decoded = _outputs(fp32, feeds), _decoded(shared, report)
    for layer in report["layers"][:2] + report["layers"][-2:]:
        got = _outputs(fp32, feeds, {layer["weight"]: decoded[layer["weight"]]})
        assert layer["output_rel_error"] == pytest.approx(_rel(got, ref), rel=1e-3, abs=1e-6)


def test_model_allocation_moves_bits_and_lowers_the_error_at_the_output(fp32, feeds, allocations):
    """Same budget, both respected; bits move away from layers whose error barely reaches the logits,
    and the whole shared model's logits end closer to FP32's than with the layer rule's bits."""
    ref = _outputs(fp32, feeds)
    end_to_end, bits = {}, {}
    for s, (shared, report) in allocations.items():
        n = sum(int(np.prod(l["shape"])) for l in report["layers"])
        assert sum(int(np.prod(l["shape"])) * l["bits"] + l["codebook_size"] * 32 for l in report["layers"]) <= MEAN_BITS * n
        end_to_end[s] = _rel(_outputs(shared, feeds), ref)
        bits[s] = {l["layer"]: l["bits"] for l in report["layers"]}
    fewer = [n for n in bits["model"] if bits["model"][n] < bits["layer"][n]]
    assert fewer and any(bits["model"][n] > bits["layer"][n] for n in bits["model"])
    assert end_to_end["model"] < 0.8 * end_to_end["layer"], end_to_end
    # the sum of the per-layer squared errors predicts the whole model's (additivity to first order)
    predicted = np.sqrt(sum(l["output_rel_error"] ** 2 for l in allocations["model"][1]["layers"]))
    assert 0.5 < end_to_end["model"] / predicted < 2.0


def test_bad_sensitivity_settings_are_refused(fp32):
    with pytest.raises(ConfigError, match="sensitivity 'exact' is not one of layer, model"):
        ShareConfig(rule="size", sensitivity="exact")
    with pytest.raises(ConfigError, match="rule size or error"):
        ShareConfig(sensitivity="model")
    with pytest.raises(ConfigError, match="threads"):
        ShareConfig(rule="size", sensitivity="model", threads=-1)
    with pytest.raises(ConfigError, match="needs calibration data"):
        share_onnx(fp32, ShareConfig(rule="size", sensitivity="model", min_size=64))


def test_cli_model_sensitivity(tmp_path, capsys):
    out = tmp_path / "m.onnx"
    assert main(["share", str(onnx_path("fashion_cnn")), "-o", str(out), "--rule", "error", "--error", "0.05", "--sensitivity", "model",
                 "--threads", "1", "--data", "random:8", "--min-size", "64"]) == 0
    assert "error measured on model outputs" in capsys.readouterr().out
    assert out.exists()
