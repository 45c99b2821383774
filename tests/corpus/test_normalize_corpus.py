"""Normalisation on graphs others exported: it removes what it should, and the model computes the
same outputs on real held-out data (photos, Fashion-MNIST, token ids) before and after."""
from __future__ import annotations

import collections

import onnx
import pytest

from trtcompress.stages.normalize import NormalizeConfig, normalize

from .builders import FAST, SLOW
from .checks import dead_initializers, relative_error, run

pytestmark = pytest.mark.torch

CASES = [pytest.param(n) for n in FAST] + [pytest.param(n, marks=pytest.mark.slow) for n in SLOW]


def _ops(model: onnx.ModelProto) -> collections.Counter:
    return collections.Counter(n.op_type for n in model.graph.node)


@pytest.mark.parametrize("name", CASES)
def test_normalize_keeps_the_function_on_real_data(corpus, name):
    case = corpus(name)
    model = onnx.load(case.path)
    result = normalize(model, NormalizeConfig())
    out, report = result.model, result.report
    onnx.checker.check_model(out)
    assert report["nodes_after"] == len(out.graph.node) <= report["nodes_before"] == len(model.graph.node)
    assert "Constant" not in _ops(out) and not dead_initializers(out)
    assert [i.name for i in out.graph.input] == [i.name for i in model.graph.input]
    assert [o.name for o in out.graph.output] == [o.name for o in model.graph.output]
    for feed in case.eval:
        for ref, got, unfused in zip(run(model, feed), run(out, feed), run(model, feed, optimize=False)):
            assert ref.shape == got.shape
            # float rounding of folded weights: at most 1e-4, or twice what ONNX Runtime's own
            # fusions change (PP-OCRv4's recognizer on printed text: 1.6e-4 from them alone)
            assert relative_error(ref, got) < max(1e-4, 2 * relative_error(ref, unfused))


@pytest.mark.slow
def test_torchscript_efficientnet_same_pads_fold_into_the_depthwise_convs(corpus):
    """The TorchScript export computes a TensorFlow "same" Pad per depthwise Conv at run time
    (Shape, ConstantOfShape, Concat, Slice, Transpose, Cast): all of it folds into the Convs' pads."""
    ts = onnx.load(corpus("efficientnet_lite0-ts17").path)
    dyn = onnx.load(corpus("efficientnet_lite0-dynamo").path)
    assert _ops(ts)["Pad"] == 17 and _ops(ts)["ConstantOfShape"] == 17
    out = normalize(ts, NormalizeConfig()).model
    ops = _ops(out)
    for op in ("Pad", "ConstantOfShape", "Slice", "Transpose", "Cast", "Constant"):
        assert ops[op] == 0, op
    assert ops["Conv"] == _ops(dyn)["Conv"] == 49
    assert len(out.graph.node) <= len(dyn.graph.node) + 5  # the dynamic-batch flatten stays: Shape, Gather, Unsqueeze, Concat
    asym = [n for n in out.graph.node if n.op_type == "Conv" and any(a.name == "pads" and list(a.ints[:2]) != list(a.ints[2:]) for a in n.attribute)]
    assert asym  # stride-2 "same" padding is asymmetric


def test_pads_and_batchnorms_fold_everywhere_they_may(corpus):
    case = corpus("padded_bn")
    model = onnx.load(case.path)
    assert _ops(model)["Pad"] == 5 and _ops(model)["BatchNormalization"] == 4
    report = normalize(model, NormalizeConfig()).report
    assert report["rewrites"]["fold_pad"] == {"nodes_removed": 5, "initializers_change": 0, "Conv": 3, "MaxPool": 1, "AveragePool": 1}
    assert report["rewrites"]["fold_batchnorm"]["Conv"] == 3 and report["rewrites"]["fold_batchnorm"]["Gemm"] == 1
    assert report["ops_removed"]["Pad"] == 5 and report["ops_removed"]["BatchNormalization"] == 4


def test_rapidocr_batchnorms_fold_into_their_convs(corpus):
    model = onnx.load(corpus("rapidocr-cls").path)
    assert _ops(model)["BatchNormalization"] == 35
    out = normalize(model, NormalizeConfig()).model
    assert _ops(out)["BatchNormalization"] == 0


def test_switches_turn_rewrites_off(corpus):
    model = onnx.load(corpus("padded_bn").path)
    out = normalize(model, NormalizeConfig(fold_pad=False, fold_batchnorm=False)).model
    assert _ops(out)["Pad"] == 5 and _ops(out)["BatchNormalization"] == 4
    assert _ops(out)["Constant"] == 0


def test_verify_runs_both_models_once(corpus):
    model = onnx.load(corpus("fashion_vit-ts17").path)
    report = normalize(model, NormalizeConfig(verify=True)).report
    assert report["verify"]["max_relative_difference"] < 1e-5
