"""No dead initialiser or node ships from the low-rank rewrite (issue 14), on real ONNX files: the
shipped Fashion-MNIST CNN (weights as initialisers), PP-OCR's text-direction classifier (rapidocr:
weights as Constant nodes of the main graph, which the protobuf version of this stage left behind,
dead, next to their factors) and silero-vad (weights as Constant nodes inside If branches)."""
from __future__ import annotations

import importlib.util
from pathlib import Path

import onnx
import pytest

from trtcompress import zoo
from trtcompress.lowrank import LowRankConfig, factorize_onnx


def dead_code(model: onnx.ModelProto) -> list[str]:
    """Nodes whose outputs nothing reads or returns, and initialisers nothing reads, in every graph."""
    import onnx_ir as ir

    from trtcompress.graph._util import walk_graphs

    m = ir.from_proto(model)
    dead = []
    for graph, scope in walk_graphs(m.graph):
        dead += [f"{scope}:{n.name}" for n in graph if not any(o.uses() or o.is_graph_output() for o in n.outputs)]
        dead += [f"{scope}:{v.name}" for v in graph.initializers.values() if not (v.uses() or v.is_graph_input() or v.is_graph_output())]
    return dead


def _rapidocr_cls() -> Path:
    spec = importlib.util.find_spec("rapidocr_onnxruntime")
    if spec is None:
        pytest.skip("rapidocr_onnxruntime is not installed")
    return Path(spec.origin).parent / "models" / "ch_ppocr_mobile_v2.0_cls_infer.onnx"


def _silero() -> Path:
    spec = importlib.util.find_spec("silero_vad")
    if spec is None:
        pytest.skip("silero_vad is not installed")
    return Path(spec.origin).parent / "data" / "silero_vad.onnx"


@pytest.mark.parametrize("source, config", [
    (lambda: zoo.onnx_path("fashion_cnn"), LowRankConfig(rule="flops", flop_fraction=0.5)),
    (_rapidocr_cls, LowRankConfig(rule="energy", energy=0.95)),
    (_silero, LowRankConfig(rule="energy", energy=0.999)),
])
def test_factorised_model_has_no_dead_code(source, config):
    model = onnx.load(str(source()))
    assert dead_code(model) == []  # so whatever is dead below, the rewrite left it
    result = factorize_onnx(model, config)
    assert result.report["factorised"] > 0
    assert dead_code(result.model) == []
    onnx.checker.check_model(result.model)
    # the dense weights of the factorised layers are gone, from initialisers and Constant nodes alike
    import onnx_ir as ir

    from trtcompress.graph._util import walk_graphs

    before, after = ir.from_proto(model), ir.from_proto(result.model)
    names = {l["name"] for l in result.report["layers"]}
    weights = {n.inputs[1].name for g, _ in walk_graphs(before.graph) for n in g if (n.name or n.outputs[0].name) in names}
    left = {v.name for g, _ in walk_graphs(after.graph) for v in [*g.initializers.values(), *(o for n in g for o in n.outputs)]}
    assert weights and not weights & left


def test_the_stage_takes_a_model_whose_weights_live_in_if_branches():
    """silero-vad keeps every weight inside If branches: the float-weight check looks there too."""
    from trtcompress.stages.lowrank import lowrank

    result = lowrank(onnx.load(str(_silero())), LowRankConfig(rule="energy", energy=0.999))
    assert result.report["factorised"] > 0
