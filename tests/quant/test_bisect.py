"""trtcompress debug: bisection names the quantized layer that breaks a real Q/DQ model."""
from __future__ import annotations

import json

import numpy as np
import onnx
import onnx_ir as ir
import pytest
from onnx import numpy_helper

from trtcompress.errors import ModelError
from trtcompress.model_io import load_model, save_model
from trtcompress.quant.bisect import DebugConfig, find_divergent_layers, make_float, quantized_layers
from trtcompress.stages.quantize import QuantizeConfig, quantize


zoo = pytest.importorskip("trtcompress.zoo")


@pytest.fixture(scope="module")
def fashion(tmp_path_factory):
    """The shipped Fashion CNN (real weights), its Q/DQ form calibrated on real images, test images."""
    tmp = tmp_path_factory.mktemp("debug")
    x, _ = zoo.fashion_mnist("train", limit=256)
    np.savez(tmp / "cal.npz", x=x)
    fp32 = zoo.onnx_path("fashion_cnn")
    q = quantize(load_model(fp32), QuantizeConfig(calib=str(tmp / "cal.npz"), sensitivity_samples=0, progress=False, refine_ranges=False)).model
    save_model(q, tmp / "q.onnx")
    xe, _ = zoo.fashion_mnist("test", limit=128)
    np.savez(tmp / "eval.npz", x=xe)
    return fp32, tmp, [{"x": xe}]


def _node(model: onnx.ModelProto | ir.Model, name: str) -> ir.Node:
    m = model if isinstance(model, ir.Model) else ir.from_proto(model)
    return next(n for n in m.graph if n.name == name)


def _weight(model: onnx.ModelProto, layer: str) -> np.ndarray:
    return ir.convenience.get_const_tensor(_node(model, layer).inputs[1]).numpy()


def _corrupt_weight_scale(model: onnx.ModelProto, layer: str, factor: float) -> onnx.ModelProto:
    """Multiply the weight quantization scale of ``layer`` (its Q and its DQ) by ``factor``."""
    out = onnx.ModelProto()
    out.CopyFrom(model)
    dq = _node(out, layer).inputs[1].producer()
    names = {dq.inputs[1].name}
    q = dq.inputs[0].producer()
    if q is not None:
        names.add(q.inputs[1].name)
    for t in out.graph.initializer:
        if t.name in names:
            t.CopyFrom(numpy_helper.from_array((numpy_helper.to_array(t) * factor).astype(np.float32), t.name))
    return out


@pytest.mark.parametrize("layer, factor", [("/features/features.3/features.3.0/Conv", 0.01), ("/head/head.1/Gemm", 100.0)])
def test_a_planted_bad_scale_is_named_exactly(fashion, tmp_path, layer, factor):
    fp32, tmp, feeds = fashion
    q = load_model(tmp / "q.onnx")
    assert layer in quantized_layers(q)
    bad = tmp_path / "bad.onnx"
    save_model(_corrupt_weight_scale(q, layer, factor), bad)
    result = find_divergent_layers(fp32, bad, feeds, DebugConfig())
    assert result.diverges and result.metric_quantized < 0.99
    assert [f.node for f in result.layers] == [layer]
    assert result.metric_fixed >= 0.99 and result.layers[0].metric_alone_float == result.metric_fixed
    # a bisection, not a sweep: fewer runs than trying each of the 10 layers alone
    assert result.runs <= 2 + 2 * (np.ceil(np.log2(result.quantized_layers)) + 1)


def test_a_healthy_model_says_there_is_no_divergence(fashion):
    fp32, tmp, feeds = fashion
    result = find_divergent_layers(fp32, tmp / "q.onnx", feeds, DebugConfig())
    assert not result.diverges and result.layers == [] and result.runs == 1 and result.metric_quantized > 0.999


def test_two_planted_defects_are_both_found(fashion, tmp_path):
    fp32, tmp, feeds = fashion
    layers = ["/features/features.2/b/b.0/Conv", "/head/head.4/Gemm"]
    q = load_model(tmp / "q.onnx")
    for layer, factor in zip(layers, (0.01, 100.0)):
        q = _corrupt_weight_scale(q, layer, factor)
    save_model(q, tmp_path / "bad2.onnx")
    result = find_divergent_layers(fp32, tmp_path / "bad2.onnx", feeds, DebugConfig())
    assert [f.node for f in result.layers] == layers


def test_make_float_removes_only_that_layers_qdq(fashion):
    fp32, tmp, _ = fashion
    q = load_model(tmp / "q.onnx")
    layer = "/head/head.1/Gemm"
    fixed = make_float(q, [layer], load_model(fp32))
    assert layer not in quantized_layers(fixed) and len(quantized_layers(fixed)) == len(quantized_layers(q)) - 1
    np.testing.assert_array_equal(_weight(fixed, layer), _weight(load_model(fp32), layer))
    with pytest.raises(ModelError, match="not a quantized layer"):
        make_float(q, ["nosuch"])


def test_cli_names_the_layer_and_writes_the_fixed_model(fashion, tmp_path, capsys):
    from trtcompress.cli.main import main

    fp32, tmp, _ = fashion
    layer = "/features/features.3/features.3.0/Conv"
    save_model(_corrupt_weight_scale(load_model(tmp / "q.onnx"), layer, 0.01), tmp_path / "bad.onnx")
    assert main(["debug", str(fp32), str(tmp_path / "bad.onnx"), "--data", str(tmp / "eval.npz"), "--batch", "128", "-o", str(tmp_path / "fixed.onnx"), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert [f["node"] for f in out["layers"]] == [layer]
    fixed = tmp_path / "fixed.onnx"
    assert layer not in quantized_layers(load_model(fixed))
    # the written model no longer diverges
    assert main(["debug", str(fp32), str(fixed), "--data", str(tmp / "eval.npz"), "--batch", "128"]) == 0
    assert capsys.readouterr().out.startswith("no divergence")
    assert main(["debug", str(fp32), str(fp32), "--data", "random:2"]) == 2
    err = capsys.readouterr().err
    assert "no quantized layers" in err and "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_int8_stored_weights_take_the_fp32_twin(fashion):
    """weights="int8" keeps no float weight in the Q/DQ model: the FP32 model's is used."""
    fp32, tmp, feeds = fashion
    q = quantize(load_model(fp32), QuantizeConfig(calib=str(tmp / "cal.npz"), sensitivity_samples=0, progress=False, refine_ranges=False, weights="int8")).model
    layer = "/features/features.3/features.3.0/Conv"
    fixed = make_float(q, [layer], load_model(fp32))
    w_ref = _weight(load_model(fp32), layer)
    np.testing.assert_array_equal(_weight(fixed, layer), w_ref)
    # without the FP32 model: the dequantized weight, within half a step of the float one
    w = _weight(make_float(q, [layer]), layer)
    step = np.abs(w_ref).reshape(w_ref.shape[0], -1).max(1) / 127
    assert np.all(np.abs(w - w_ref).reshape(w.shape[0], -1).max(1) <= step * 0.5 + 1e-7)
