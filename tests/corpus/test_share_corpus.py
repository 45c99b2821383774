"""``share`` on graphs other exporters wrote (TorchScript at several opsets, dynamo, an unfolded
BatchNorm net with explicit pads and Constant nodes, a transformers encoder whose tied weights sit
behind Identity chains, PaddleOCR's classifier with unnamed nodes and every weight a Constant node),
normalised first as the ``share`` verb does: every shared weight is read back by the share reader and the graph layer, the
packed artifact restores the ONNX bit-exactly, and the shared model computes what the same model
with the decoded weights as plain initializers computes, on held-out data."""
from __future__ import annotations

import numpy as np
import onnx
import pytest

from trtcompress.metrics import shared_weights
from trtcompress.share import ShareConfig
from trtcompress.share.decode import decode_shared
from trtcompress.share.pack import pack_bytes, unpack_bytes
from trtcompress.share.read import read_shared
from trtcompress.stages.normalize import with_normalize
from trtcompress.stages.share import share

from .builders import FAST, SLOW
from .checks import relative_error, run

pytestmark = pytest.mark.torch

# one graph per exporter and oddity runs by default; the rest of the corpus is marked slow
QUICK = ("padded_bn", "bert", "rapidocr-cls")
CASES = [pytest.param(n) for n in QUICK] + [pytest.param(n, marks=pytest.mark.slow) for n in FAST + SLOW
                                             if n not in QUICK and not n.startswith("rapidocr-")]


@pytest.mark.parametrize("name", CASES)
def test_share_then_unpack_and_decode(corpus, name):
    case = corpus(name)
    model = onnx.load(case.path)
    result = with_normalize(share, model, ShareConfig(bits=4, min_size=4096))
    out, report = result.model, result.report
    onnx.checker.check_model(out)
    n = report["layers_shared"]
    assert n > 0, report["skipped"][:3]
    assert len(shared_weights(out)) == n  # the graph layer's count
    readable = read_shared(out)  # what trained centroids read: batched MatMul weights have no torch Linear
    assert len(readable) == n - sum(len(l["shape"]) > 2 and l["op"] == "MatMul" for l in report["layers"])
    sizes = report["sizes"]
    assert sizes["packed_bytes"] < sizes["onnx_bytes_after"] < sizes["onnx_bytes_before"]  # byte indices, then entropy-coded
    data = out.SerializeToString()
    art, _ = pack_bytes(data)
    assert unpack_bytes(art) == data
    dense, decoded = decode_shared(out)
    assert decoded == n and not shared_weights(dense)
    for feed in case.eval:
        got, ref = run(out, feed), run(dense, feed)
        for g, r in zip(got, ref):
            if np.issubdtype(r.dtype, np.floating):
                assert relative_error(r, g) < 1e-4
            else:
                assert np.array_equal(r, g)


@pytest.mark.parametrize("name", ["bert", "rapidocr-cls"])
def test_model_sensitivity_on_graphs_we_did_not_make(corpus, name):
    """The size rule's model-level sensitivity on an encoder with two int64 inputs and a hidden-state
    output, and on PaddleOCR's classifier: the budget holds, and a layer's error is its model
    output's relative error with that layer alone shared (computed here from the written codebook)."""
    from trtcompress.share.onnx_share import share_onnx
    from trtcompress.stages.normalize import NormalizeConfig, normalize

    case = corpus(name)
    model = normalize(onnx.load(case.path), NormalizeConfig()).model
    out, report = share_onnx(model, ShareConfig(rule="size", mean_bits=3.0, min_size=4096, sensitivity="model", threads=1), calibration=case.calib)
    assert report["error_measured_on"].startswith("model outputs") and report["layers_shared"] > 3
    n = sum(int(np.prod(l["shape"])) for l in report["layers"])
    assert sum(int(np.prod(l["shape"])) * l["bits"] + l["codebook_size"] * 32 for l in report["layers"]) <= 3.0 * n
    inits = {t.name: onnx.numpy_helper.to_array(t) for t in out.graph.initializer}
    layer = max(report["layers"], key=lambda l: l["output_rel_error"])
    one = onnx.ModelProto()
    one.CopyFrom(model)
    t = next(t for t in one.graph.initializer if t.name == layer["weight"])
    t.CopyFrom(onnx.numpy_helper.from_array(inits[layer["weight"] + "_codebook"][inits[layer["weight"] + "_indices"].astype(np.int64)], t.name))
    num = den = 0.0
    for feed in case.calib:
        for g, r in zip(run(one, feed), run(model, feed)):
            num, den = num + float(np.sum((g.astype(np.float64) - r) ** 2)), den + float(np.sum(r.astype(np.float64) ** 2))
    assert layer["output_rel_error"] == pytest.approx(np.sqrt(num / den), rel=1e-2, abs=1e-5)
