"""Each output is judged by a metric that fits it (trtcompress.output_kinds), on real models:
the zoo classifier (top-1), a BERT-style encoder with padding (cosine over real tokens), the
PP-OCRv4 text detector (dense score map: relative error and pixels crossing 0.5)."""
from __future__ import annotations


import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from text_detector import INPUTS, PREPROCESS, SCORES, det_model_opset13, text_photos
from trtcompress.comparison import CompareConfig, compare
from trtcompress.data.base import model_inputs
from trtcompress.data.readers import ReaderOptions, open_source
from trtcompress.errors import ConfigError
from trtcompress.output_kinds import DEFAULT_THRESHOLDS, detect_kind
from trtcompress.zoo.models import onnx_path


def test_detection_rule_by_shape_values_and_name():
    rng = np.random.default_rng(0)
    logits = rng.standard_normal((4, 10)).astype(np.float32)
    probs = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    mask = np.ones((4, 7), np.int64)
    assert detect_kind("logits", logits) == detect_kind("output", probs) == "classification"
    assert detect_kind("boxes", rng.random((4, 4))) == "dense"  # [N, 4] named as boxes: no top-1
    assert detect_kind("output", rng.random((4, 100, 4))) == "dense"  # [N, K, 4] boxes
    assert detect_kind("sigmoid_0.tmp_0", rng.random((1, 1, 32, 32))) == "dense"
    assert detect_kind("pooler_output", rng.random((4, 64))) == "embedding"
    assert detect_kind("last_hidden_state", rng.random((4, 7, 64)), mask) == "tokens"
    assert detect_kind("last_hidden_state", rng.random((4, 7, 64))) == "dense"  # no mask: no tokens to weigh
    assert detect_kind("seg_map", rng.random((4, 7, 64)), mask) == "dense"


def _source(model, spec, **kw):
    return open_source(spec, model_inputs(model), ReaderOptions(**kw))


def test_zoo_classifier_is_judged_by_top1(tmp_path):
    model = onnx_path("fashion_cnn")
    # a broken candidate: the logits' classes rotated by one (cosine stays high on near-flat rows)
    m = onnx.load(str(model))
    out = m.graph.output[0].name
    m.graph.node[-1].output[0] = "raw_logits"
    idx = helper.make_tensor("rot", TensorProto.INT64, [10], [(i + 1) % 10 for i in range(10)])
    m.graph.node.append(helper.make_node("Gather", ["raw_logits", "rot"], [out], axis=1))
    m.graph.initializer.append(idx)
    broken = tmp_path / "rotated.onnx"
    onnx.save(m, str(broken))
    good = compare(model, model, _source(model, "random:4", batch_size=8))
    bad = compare(model, broken, _source(model, "random:4", batch_size=8))
    o = bad.outputs[out]
    assert good.passed and good.outputs[out]["kind"] == "classification" and good.outputs[out]["thresholds"] == DEFAULT_THRESHOLDS["classification"]
    assert o["kind"] == "classification" and o["top1_agreement"] < 0.5 and "rel_error_max" not in o and o["probabilities"] is False
    assert len(bad.failures) == 1 and bad.failures[0].startswith(f"{out} (classification): top-1 agreement")
    # the user may judge it otherwise; no default thresholds: nothing to fail
    assert compare(model, broken, _source(model, "random:4", batch_size=8), CompareConfig(default_thresholds=False)).passed
    assert compare(model, broken, _source(model, "random:2", batch_size=8), CompareConfig(output_kinds=(f"{out}=dense",))).outputs[out]["top1_agreement"] is None


@pytest.fixture(scope="module")
def bert(tmp_path_factory):
    """A BERT-style encoder (transformers, random weights from a config) and a copy that zeroes
    the padding positions of its output: the real tokens are the same, only padding differs."""
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    root = tmp_path_factory.mktemp("bert")
    torch.manual_seed(0)
    cfg = transformers.BertConfig(vocab_size=200, hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64, max_position_embeddings=32)
    enc = transformers.BertModel(cfg).eval()

    class Hidden(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.enc = enc

        def forward(self, input_ids, attention_mask):
            return self.enc(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state

    path = root / "bert.onnx"
    ids = torch.randint(1, 200, (2, 16))
    torch.onnx.export(Hidden(), (ids, torch.ones_like(ids)), str(path), input_names=["input_ids", "attention_mask"], output_names=["last_hidden_state"],
                      dynamic_axes={"input_ids": {0: "N", 1: "T"}, "attention_mask": {0: "N", 1: "T"}}, opset_version=17, dynamo=False)
    m = onnx.load(str(path))
    m.graph.node[-1].output[0] = "hidden_raw"
    m.graph.node.extend([
        helper.make_node("Cast", ["attention_mask"], ["mask_f"], to=TensorProto.FLOAT),
        helper.make_node("Unsqueeze", ["mask_f", "last_axis"], ["mask_3d"]),
        helper.make_node("Mul", ["hidden_raw", "mask_3d"], ["last_hidden_state"]),
    ])
    m.graph.initializer.append(helper.make_tensor("last_axis", TensorProto.INT64, [1], [-1]))
    zeroed = root / "bert_zeroed_padding.onnx"
    onnx.save(m, str(zeroed))
    rng = np.random.default_rng(1)
    data = root / "eval"
    data.mkdir()
    lens = rng.integers(3, 16, size=8)
    mask = (np.arange(16)[None] < lens[:, None]).astype(np.int64)
    np.savez(data / "b0.npz", input_ids=np.where(mask, rng.integers(1, 200, (8, 16)), 0).astype(np.int64), attention_mask=mask)
    return path, zeroed, data


def test_token_outputs_cosine_over_real_tokens_only(bert):
    path, zeroed, data = bert
    tokens = compare(path, zeroed, _source(path, str(data))).outputs["last_hidden_state"]
    padded = compare(path, zeroed, _source(path, str(data)), CompareConfig(output_kinds=("last_hidden_state=embedding",))).outputs["last_hidden_state"]
    assert tokens["kind"] == "tokens" and tokens["top1_agreement"] is None
    assert tokens["cosine_min"] > 0.999999  # the real tokens are untouched
    assert padded["cosine_min"] < 0.9  # counting the padding positions, the same outputs look broken


@pytest.fixture(scope="module")
def detector(tmp_path_factory):
    root = tmp_path_factory.mktemp("det")
    model = det_model_opset13(root / "det13.onnx")
    calib, evaluation = text_photos(root)
    return model, calib, evaluation


def test_score_map_is_dense_and_int8_detector_fails_the_default_verdict(detector, tmp_path):
    from trtcompress.stages.quantize import QuantizeConfig, quantize

    model, calib, evaluation = detector
    q = quantize(onnx.load(str(model)), QuantizeConfig(target="cpu", calib=str(calib), preprocess=PREPROCESS, inputs=INPUTS, sensitivity_samples=0, progress=False)).model
    qpath = tmp_path / "det_int8.onnx"
    onnx.save(q, str(qpath))
    from trtcompress.data.preprocess import PreprocessConfig

    src = lambda: _source(model, str(evaluation), preprocess=PreprocessConfig.parse(PREPROCESS))  # noqa: E731
    same = compare(model, model, src()).outputs[SCORES]
    assert same["kind"] == "dense" and same["changed_rule"] == "crosses 0.5" and same["rel_error_max"] == 0 and same["top1_agreement"] is None
    r = compare(model, qpath, src())
    o = r.outputs[SCORES]
    # with the stage's defaults 6.5% / 10.8% of the pixels cross 0.5 (cosine 0.86 / 0.69); without the
    # sensitivity pass (here, for time) it is as broken; a probability map's relative error is its RMS error
    assert o["changed_fraction"] > 0.03 and o["rel_error_rule"].startswith("RMS") and o["rel_error_max"] > 0.05
    (line,) = r.failures  # one line for the output
    assert not r.passed and line.startswith(f"{SCORES} (dense):") and "elements changed (crosses 0.5)" in line


def test_bad_output_kind_is_a_one_line_error(tmp_path):
    model = onnx_path("fashion_cnn")
    with pytest.raises(ConfigError, match="not one of"):
        CompareConfig(output_kinds=("logits=boxes",))
    with pytest.raises(ConfigError, match="does not have"):
        compare(model, model, _source(model, "random:1"), CompareConfig(output_kinds=("nope=dense",)))


def test_cli_output_kind_and_thresholds(tmp_path):
    from trtc_support import cli

    model = str(onnx_path("fashion_cnn"))
    bad = cli("compare", model, model, "--output-kind", "logits=boxes")
    assert bad.returncode == 2 and "not one of" in bad.stderr and len(bad.stderr.strip().splitlines()) == 1
    ok = cli("compare", model, model, "--output-kind", "logits=dense", "--max-rel-error", "0", "--json", check=True)
    import json

    o = json.loads(ok.stdout)["outputs"]["logits"]
    assert o["kind"] == "dense" and o["thresholds"] == {"max_rel_error": 0.0, "max_changed": 0.01} and o["top1_agreement"] is None
