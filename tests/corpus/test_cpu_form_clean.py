"""The CPU form ships nothing unused (issue 14): on real models through the quantize verb, every
node writes a tensor that a node (or a subgraph) reads or that is a graph output, and every
initializer is read; the float weights of lowered layers are gone."""
from __future__ import annotations

import onnx
import pytest

from trtcompress.stages.normalize import with_normalize
from trtcompress.stages.quantize import QuantizeConfig, quantize
from trtcompress.subgraphs import used_names

pytestmark = pytest.mark.torch

CASES = ["rapidocr-cls", "mobilenet_se-ts17", "bert", pytest.param("efficientnet_lite0-ts17", marks=pytest.mark.slow)]


@pytest.mark.parametrize("name", CASES)
def test_cpu_form_has_no_dead_node_or_initializer(corpus, name):
    case = corpus(name)
    model = onnx.load(case.path)
    config = QuantizeConfig(target="cpu", calib=str(case.calib_dir(corpus.root)), inputs=case.inputs, sensitivity_samples=0, progress=False, threads=2)
    out = with_normalize(quantize, model, config).model
    used = used_names(out.graph)
    assert [n.name for n in out.graph.node if not any(o in used for o in n.output if o)] == []
    assert [t.name for t in out.graph.initializer if t.name not in used] == []
    lowered = {n.name for n in out.graph.node if n.op_type in ("QLinearConv", "ConvInteger", "QLinearMatMul", "MatMulIntegerToFloat")}
    assert lowered
    float_weights = {t.name for t in onnx.load(case.path).graph.initializer}
    readers = {i for n in out.graph.node if n.name in lowered for i in n.input}
    assert not readers & float_weights  # a lowered layer reads its integer weights, not the float ones
