"""Cluster counts chosen per layer by an error budget or a size budget (the share stage's rules),
checked on the zoo's Fashion-MNIST CNN against outputs measured here, outside the stage's probes."""
from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import helper, numpy_helper

from trtcompress.cli.main import main
from trtcompress.errors import ConfigError
from trtcompress.sessions import SessionConfig, open_session
from trtcompress.share import ShareConfig
from trtcompress.share.onnx_share import share_onnx
from trtcompress.zoo.fashion_mnist import fashion_mnist
from trtcompress.zoo.models import onnx_path

BUDGET = 0.05


@pytest.fixture(scope="module")
def by_error(fp32, feeds):
    return share_onnx(fp32, ShareConfig(rule="error", error=BUDGET, min_size=64), calibration=feeds)


def _layer_output_error(fp32: onnx.ModelProto, shared: onnx.ModelProto, layer: dict, feeds) -> float:
    """The layer's output error with its shared weight (decoded in numpy) in the FP32 model."""
    inits = {t.name: numpy_helper.to_array(t) for t in shared.graph.initializer}
    w = inits[layer["weight"] + "_codebook"][inits[layer["weight"] + "_indices"].astype(np.int64)]
    out_name = next(n.output[0] for n in fp32.graph.node if n.name == layer["layer"])
    models = []
    for weight in (None, w):
        m = onnx.ModelProto()
        m.CopyFrom(fp32)
        if weight is not None:
            t = next(t for t in m.graph.initializer if t.name == layer["weight"])
            t.CopyFrom(numpy_helper.from_array(weight.astype(np.float32), t.name))
        m.graph.output.append(helper.make_tensor_value_info(out_name, onnx.TensorProto.FLOAT, None))
        models.append(open_session(m, SessionConfig(threads=1)))
    ref = [models[0].run([out_name], f)[0].astype(np.float64) for f in feeds]
    got = [models[1].run([out_name], f)[0].astype(np.float64) for f in feeds]
    return float(np.sqrt(sum(np.sum((g - r) ** 2) for g, r in zip(got, ref)) / sum(np.sum(r ** 2) for r in ref)))


def test_error_rule_keeps_every_layer_within_budget_measured_independently(fp32, by_error, feeds):
    shared, report = by_error
    assert report["rule"] == "error" and report["error_measured_on"] == "layer outputs on calibration data"
    assert report["layers_shared"] == 8 and not report["skipped"]
    for layer in report["layers"][:3] + report["layers"][-1:]:
        err = _layer_output_error(fp32, shared, layer, feeds)
        assert err == pytest.approx(layer["output_rel_error"], rel=1e-3, abs=1e-6)
        assert err <= BUDGET


def test_error_rule_takes_the_fewest_bits(fp32, by_error, feeds):
    _, report = by_error
    assert len({l["bits"] for l in report["layers"]}) > 1  # layers differ in what they need
    for layer in report["layers"][1:2]:
        fewer = f"{layer['layer']}={layer['bits'] - 1}"
        _, r = share_onnx(fp32, ShareConfig(rule="error", error=BUDGET, min_size=64, layer_bits=(fewer,)), calibration=feeds)
        one_less = next(l for l in r["layers"] if l["layer"] == layer["layer"])
        assert one_less["bits"] == layer["bits"] - 1 and one_less["output_rel_error"] > BUDGET


def test_a_layer_that_cannot_meet_the_budget_stays_float(fp32, feeds):
    _, report = share_onnx(fp32, ShareConfig(rule="error", error=1e-6, min_size=64), calibration=feeds)
    assert report["layers_shared"] == 0
    assert all("exceeds the budget" in s["reason"] for s in report["skipped"])


def _stored_bits(layer: dict) -> int:
    return int(np.prod(layer["shape"])) * layer["bits"] + layer["codebook_size"] * 32


def test_size_rule_spends_the_budget_better_than_uniform_bits(fp32, feeds):
    _, uniform = share_onnx(fp32, ShareConfig(rule="error", layer_bits=("*=3",), min_size=64), calibration=feeds)
    n = sum(int(np.prod(l["shape"])) for l in uniform["layers"])
    mean_bits = sum(_stored_bits(l) for l in uniform["layers"]) / n  # what 3 bits everywhere costs, codebooks included
    _, size = share_onnx(fp32, ShareConfig(rule="size", mean_bits=mean_bits, min_size=64), calibration=feeds)
    assert size["layers_shared"] == uniform["layers_shared"]
    assert sum(_stored_bits(l) for l in size["layers"]) <= mean_bits * n
    squared = lambda r: sum(l["output_rel_error"] ** 2 for l in r["layers"])
    assert squared(size) < 0.8 * squared(uniform)


def test_size_rule_without_data_measures_weights(fp32):
    _, report = share_onnx(fp32, ShareConfig(rule="size", mean_bits=4.0, min_size=64))
    assert report["error_measured_on"] == "weights"
    assert all("output_rel_error" not in l for l in report["layers"])
    n = sum(int(np.prod(l["shape"])) for l in report["layers"])
    assert sum(_stored_bits(l) for l in report["layers"]) <= 4.0 * n


def test_bad_budgets_are_refused(fp32):
    with pytest.raises(ConfigError, match="mean_bits"):
        share_onnx(fp32, ShareConfig(rule="size", mean_bits=1.0, min_bits=1, min_size=64, granularity="channel"))
    with pytest.raises(ConfigError, match="needs calibration data"):
        share_onnx(fp32, ShareConfig(rule="error", min_size=64))
    with pytest.raises(ConfigError, match="rule"):
        ShareConfig(rule="energy")


def test_cli_error_rule(tmp_path, capsys):
    out = tmp_path / "m.onnx"
    assert main(["share", str(onnx_path("fashion_cnn")), "-o", str(out), "--rule", "error", "--error", "0.1",
                 "--data", "random:8", "--min-size", "64"]) == 0
    text = capsys.readouterr().out
    assert "error measured on layer outputs on calibration data" in text and "output error" in text
    assert out.exists()


def test_report_counts_what_is_shipped_and_what_is_held(fp32, tmp_path):
    """The job's compression metrics: the packed artifact against the FP32 file for a shared model,
    and the weights a runtime holds (decoded shared weights, int8 behind QuantizeLinear)."""
    from trtcompress.metrics import compression_ratio
    from trtcompress.model_io import save_model
    from trtcompress.share.pack import pack_bytes
    from trtcompress.stages.quantize import QuantizeConfig, quantize
    from trtcompress.stages.share import share

    x, _ = fashion_mnist("train", limit=32)
    np.savez(tmp_path / "calib.npz", x=x)
    paths = {}
    for name, model in {"fp32": fp32, "shared": share(fp32, ShareConfig(bits=4)).model,
                        "int8": quantize(fp32, QuantizeConfig(calib=str(tmp_path / "calib.npz"))).model}.items():
        paths[name] = tmp_path / f"{name}.onnx"
        save_model(model, paths[name])
    shared = compression_ratio(paths["fp32"], paths["shared"])
    assert shared["bytes_packed"] == pack_bytes(paths["shared"].read_bytes())[1]["artifact_bytes"]
    assert shared["ratio_packed"] == pytest.approx(paths["fp32"].stat().st_size / shared["bytes_packed"])
    assert shared["ratio_packed"] > 6 and shared["ratio_in_memory"] == pytest.approx(1.0)  # decoded at load: float again
    int8 = compression_ratio(paths["fp32"], paths["int8"])
    assert "bytes_packed" not in int8
    assert 3.5 < int8["ratio_in_memory"] < 4.0  # int8 weights, float biases
