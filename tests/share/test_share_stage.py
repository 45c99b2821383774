"""The share stage on the zoo's Fashion-MNIST CNN: the ONNX computes the shared weights exactly,
ONNX Runtime folds the decode away, outputs stay within the clustering error, and the CLI works."""
from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from trtcompress.cli.main import main
from trtcompress.errors import ConfigError
from trtcompress.sessions import SessionConfig, create_session, open_session
from trtcompress.share import ShareConfig
from trtcompress.stages.share import share
from trtcompress.zoo.fashion_mnist import fashion_mnist
from trtcompress.zoo.models import onnx_path


@pytest.fixture(scope="module")
def images():
    x, y = fashion_mnist("test", limit=500)
    return x, y


def _run(model, x):
    return open_session(model, SessionConfig(threads=1)).run(None, {"x": x})[0]


def _substituted(fp32: onnx.ModelProto, shared: onnx.ModelProto) -> onnx.ModelProto:
    """``fp32`` with each shared weight replaced by the float values its codebook and indices give,
    decoded here in numpy (so the check covers the ONNX decode's semantics)."""
    inits = {t.name: numpy_helper.to_array(t) for t in shared.graph.initializer}
    out = onnx.ModelProto()
    out.CopyFrom(fp32)
    for t in out.graph.initializer:
        if t.name + "_codebook" not in inits:
            continue
        book, idx = inits[t.name + "_codebook"], inits[t.name + "_indices"].astype(np.int64)
        shape = tuple(t.dims)
        if book.ndim == 1:
            w = book[idx]
        else:  # per channel: the GatherElements axis says whether channels are rows or columns
            axis = next(a.i for n in shared.graph.node if n.op_type == "GatherElements" and n.input[0] == t.name + "_codebook" for a in n.attribute if a.name == "axis")
            w = np.take_along_axis(book, idx, axis=axis)
        t.CopyFrom(numpy_helper.from_array(w.reshape(shape).astype(np.float32), t.name))
    return out


@pytest.mark.parametrize("name, granularity, layers", [
    ("fashion_cnn", "layer", 7), ("fashion_cnn", "channel", 7),  # Conv, Gemm transB: channels are rows
    ("fashion_vit", "channel", 12),  # MatMul [in, out]: channels are columns; the 7x7 patch conv (rows of 49) stays float
])
def test_outputs_equal_the_float_model_with_shared_weights(images, name, granularity, layers):
    fp32 = onnx.load(onnx_path(name))
    result = share(fp32, ShareConfig(bits=4, granularity=granularity))
    assert result.report["layers_shared"] == layers
    x = images[0][:64]
    np.testing.assert_allclose(_run(result.model, x), _run(_substituted(fp32, result.model), x), rtol=1e-5, atol=1e-5)


def test_onnxruntime_folds_the_decode(fp32, tmp_path):
    import onnxruntime as ort

    shared = share(fp32, ShareConfig(bits=4)).model
    assert sum(n.op_type == "Gather" for n in shared.graph.node) == 7
    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
    opts.optimized_model_filepath = str(tmp_path / "opt.onnx")
    create_session(shared, opts, ["CPUExecutionProvider"])
    optimized = onnx.load(str(tmp_path / "opt.onnx"))
    assert not [n.op_type for n in optimized.graph.node if n.op_type in ("Gather", "GatherElements", "Cast", "Reshape")]


def test_outputs_within_the_clustering_error(fp32, images):
    x, y = images
    ref = _run(fp32, x)
    errors = {}
    for bits in (3, 6):
        result = share(fp32, ShareConfig(bits=bits))
        out = _run(result.model, x)
        errors[bits] = np.linalg.norm(out - ref) / np.linalg.norm(ref)
        weight_err = max(l["rel_error"] for l in result.report["layers"])
        assert errors[bits] < 2 * weight_err * 7  # seven shared layers, each within its weight error
    assert errors[6] < errors[3] / 2  # finer codebooks, closer outputs
    acc = lambda logits: float(np.mean(logits.argmax(1) == y))
    assert acc(_run(share(fp32, ShareConfig(bits=6)).model, x)) >= acc(ref) - 0.01


def test_pruning_survives_sharing_and_sizes_are_reported(fp32):
    result = share(fp32, ShareConfig(bits=4, prune=0.5))
    for layer in result.report["layers"]:
        assert layer["zeros"] >= 0.5 - 1e-3
        assert layer["share_rel_error"] <= layer["rel_error"]
        assert layer["codebook"] == "float" and "int8_levels" not in layer  # what the layer holds: float values
    s = result.report["sizes"]
    assert s["packed_bytes"] < s["onnx_bytes_after"] < s["onnx_bytes_before"]
    assert s["ratio_packed"] > 8


def test_include_exclude_and_layer_bits(fp32):
    r = share(fp32, ShareConfig(include=("Gemm",), layer_bits=("/head/head.4/*=2",))).report
    assert [l["op"] for l in r["layers"]] == ["Gemm", "Gemm"]
    assert [l["clusters"] for l in r["layers"]] == [16, 4]
    with pytest.raises(ConfigError, match="--exclude 'nope' matches no node"):
        share(fp32, ShareConfig(exclude=("nope",)))
    with pytest.raises(ConfigError, match="PATTERN=BITS"):
        ShareConfig(layer_bits=("Gemm",))


def test_cli_share(tmp_path, capsys):
    out = tmp_path / "s.onnx"
    assert main(["share", str(onnx_path("fashion_cnn")), "-o", str(out), "--bits", "5", "--granularity", "channel"]) == 0
    text = capsys.readouterr().out
    assert "shared 7 layers" in text and "packed" in text
    onnx.checker.check_model(onnx.load(str(out)))


def test_a_quantized_model_is_refused(tmp_path):
    from trtcompress.errors import ModelError

    model = onnx.load(onnx_path("fashion_cnn"))
    for t in model.graph.initializer:  # an int8 model: no float weight left to share
        t.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(t).astype(np.int8), t.name))
    with pytest.raises(ModelError, match="no float weights"):
        share(model, ShareConfig())


@pytest.mark.parametrize("int8_grid", [False, True])
def test_prune_then_share_keeps_2to4_and_sparsify_leaves_shared_weights_alone(fp32, int8_grid):
    """Deep Compression's order (prune, then share) in one pipeline: the contract check reads the
    decoded weights through the codebook (and the INT8 grid's scale), so the 2:4 layers are still
    counted; sparsify after share does not rewrite a codebook decode, it says why."""
    from trtcompress.pipeline import Pipeline
    from trtcompress.sparsity.inspect import inspect_layers
    from trtcompress.stages.sparsify import SparsifyConfig, sparsify

    result = Pipeline([SparsifyConfig(), ShareConfig(bits=4, int8_grid=int8_grid)]).run(fp32)
    layers = [lay for lay in inspect_layers(result.model) if lay.shape is not None]
    assert sum(lay.follows_2to4 for lay in layers) == sum(lay.follows_2to4 for lay in inspect_layers(sparsify(fp32, SparsifyConfig()).model))
    assert sum(lay.follows_2to4 for lay in layers) > 0
    again = sparsify(share(fp32, ShareConfig(bits=4, int8_grid=int8_grid)).model, SparsifyConfig())
    reasons = [s["reason"] for s in again.report["skipped"]]
    assert any("weight is shared" in r for r in reasons), reasons


def test_quantize_after_share_consumes_the_shared_weights(fp32):
    """quantize decodes shared weights (tests/share/test_int8_grid.py runs it): no warning, and the
    property is not checked after it; sharing a quantized model is still refused."""
    from trtcompress.pipeline import Pipeline
    from trtcompress.stages.quantize import QuantizeConfig

    assert Pipeline([ShareConfig(bits=4), QuantizeConfig(calib="unused.npy")]).warnings == []
    with pytest.raises(ConfigError, match="run share before quantize"):
        Pipeline([QuantizeConfig(calib="unused.npy"), ShareConfig(bits=4)])
