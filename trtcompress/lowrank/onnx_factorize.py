"""Factorise the constant weights of an ONNX model by truncated SVD, on onnx-ir.

Each Conv/Gemm/MatMul whose op has a registered rule becomes two nodes (see ``onnx_rules``). Ranks
come from ``ranks.choose_ranks``; for the error rule, each layer's output error is measured with
ONNX Runtime on calibration data, feeding the layer the inputs it sees in the dense model.

The model is converted to onnx-ir once on entry and back once on exit (the stage interface is
``onnx.ModelProto``); onnx-ir is imported by the functions that use it.
"""
from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any, Callable, Iterable

import numpy as np
import onnx

from ..model_io import parameter_count
from .config import LowRankConfig
from .flops import inferred_shapes, model_macs
from .onnx_rules import Constants, get_rule
from .ranks import Candidate, choose_ranks, excluded
from .svd import Spectrum

if TYPE_CHECKING:
    import onnx_ir as ir

__all__ = ["factorize_onnx", "LowRankResult"]

Feed = dict[str, np.ndarray]


@dataclasses.dataclass
class LowRankResult:
    model: onnx.ModelProto
    report: dict[str, Any]


@dataclasses.dataclass
class _Layer:
    node: ir.Node
    name: str
    weight: np.ndarray
    cand: Candidate
    positions_known: bool
    x_type: int  # ONNX element type of the data input (the error rule's probes declare it)


def factorize_onnx(model: onnx.ModelProto, config: LowRankConfig, calibration: Iterable[Feed] | None = None) -> LowRankResult:
    """Return a factorised copy of ``model`` and a report; ``model`` is left unchanged.

    ``calibration`` (feed dicts) overrides ``config.calib`` for the error rule.
    """
    import onnx_ir as ir
    from onnx_ir.passes.common import RemoveUnusedNodesPass

    from ..graph._util import add_initializer, walk_graphs
    from ..graph.layer_probe import calibration_feeds

    m = ir.from_proto(model)
    consts = Constants(m)
    with inferred_shapes(m):
        layers, skipped = _candidates(m, consts, config)
        macs_before = model_macs(m, infer=False)
    if config.rule == "error" and layers:
        _attach_error_probes(model, consts, layers, calibration_feeds(model, config, calibration, "lowrank rule 'error'"))
    choices = choose_ranks([l.cand for l in layers], config)

    chosen = {c.name: c for c in choices}
    by_node = {id(l.node): l for l in layers}
    per_layer = []
    # a layer inside an If/Loop/Scan body is rewritten in its own graph; its factors are main-graph
    # initialisers, which every body can read. Bodies are visited last first (the order of the
    # factors and of the report as before the move to onnx-ir)
    for graph, _ in reversed(list(walk_graphs(m.graph))):
        for node in list(graph):
            layer = by_node.get(id(node))
            choice = chosen.get(layer.name) if layer else None
            if choice is None:
                continue
            if choice.rank is None:
                skipped.append({"name": layer.name, "op": node.op_type, "reason": choice.reason})
                continue
            p, q = layer.cand.spectrum.factors(choice.rank)
            dtype = layer.weight.dtype
            pair = get_rule(node.op_type).rewrite(node, p, q, tuple(layer.weight.shape),
                                                  lambda name, a: add_initializer(m.graph, np.ascontiguousarray(a.astype(dtype)), name))
            _replace(graph, node, pair)
            per_layer.append(_layer_report(layer, choice))
    # the replaced weights (initialisers, Constant nodes in bodies) and anything else dead: none ships
    RemoveUnusedNodesPass()(m)

    macs_after = model_macs(m)
    out = ir.to_proto(m)
    total_before, total_after = sum(macs_before.values()), sum(macs_after.values())
    fact_before = sum(r["flops_before"] for r in per_layer)
    fact_after = sum(r["flops_after"] for r in per_layer)
    report = {
        "rule": config.rule,
        "layers": per_layer,
        "skipped": skipped,
        "factorised": len(per_layer),
        "params_before": parameter_count(model),
        "params_after": parameter_count(out),
        "flops_before": 2 * total_before,
        "flops_after": 2 * total_after,
        "flop_reduction": total_before / total_after if total_after else None,
        "factorised_flops_before": fact_before,
        "factorised_flops_after": fact_after,
        "factorised_flop_fraction": fact_after / fact_before if fact_before else None,
        "flops_per": "sample (dynamic dimensions count as 1)",
        "svd_seconds": round(sum(l.cand.spectrum.seconds for l in layers), 4),
    }
    return LowRankResult(out, report)


def _replace(graph: ir.Graph, node: ir.Node, pair: list[ir.Node]) -> None:
    """Put ``pair`` in ``node``'s place; the second node's output takes over the output's name,
    type, shape and annotations (a graph output keeps the exporter's metadata)."""
    import onnx_ir as ir

    old, new = node.outputs[0], pair[-1].outputs[0]
    new.metadata_props.update(old.metadata_props)
    new.doc_string = old.doc_string
    ir.convenience.replace_nodes_and_values(graph, node, [node], pair, [old], [new])


def _candidates(model: ir.Model, consts: Constants, config: LowRankConfig) -> tuple[list[_Layer], list[dict]]:
    """The layers a rule can factorise (shapes inferred), and the skipped ones with the reason."""
    from ..graph._util import walk_graphs

    layers, skipped = [], []
    for i, (node, scope) in enumerate((n, s) for g, s in walk_graphs(model.graph) for n in g):
        if node.op_type not in config.ops:
            continue
        name = node.name or node.outputs[0].name
        rule = get_rule(node.op_type)
        if rule is None:
            continue
        if scope and config.rule == "error":
            skipped.append({"name": name, "op": node.op_type, "reason": f"inside {scope}: the error rule cannot read a subgraph's tensors; use the energy or rank rule"})
            continue
        if excluded(name, config.exclude, node.op_type):
            skipped.append({"name": name, "op": node.op_type, "reason": "excluded by the config"})
            continue
        reason = rule.skip_reason(node, consts)
        if reason:
            skipped.append({"name": name, "op": node.op_type, "reason": reason})
            continue
        w = consts.array(rule.weight(node))
        m = rule.matrix(node, w)
        pos = rule.positions(node)
        spectrum = Spectrum(m, config.svd, config.randomized_min_dim, config.oversample, config.power_iters, config.seed + i)
        cand = Candidate(name, node.op_type, m.shape[0], m.shape[1], pos or 1, spectrum)
        x = node.inputs[0]
        x_type = int(x.dtype) if x is not None and x.dtype is not None else onnx.TensorProto.FLOAT
        layers.append(_Layer(node, name, w, cand, pos is not None, x_type))
    return layers, skipped


def _layer_report(layer: _Layer, choice) -> dict[str, Any]:
    c = layer.cand
    r = choice.rank
    d = {
        "name": layer.name,
        "op": c.op,
        "weight_shape": list(layer.weight.shape),
        "matrix": [c.out_dim, c.in_dim],
        "rank": r,
        "full_rank": c.spectrum.full_rank,
        "break_even_rank": choice.r_max,
        "energy": round(float(choice.energy), 6) if choice.energy is not None else None,
        "params_before": c.dense_params,
        "params_after": c.params(r),
        "flops_before": 2 * c.dense_macs,
        "flops_after": 2 * c.macs(r),
        "svd": c.spectrum.used,
        "svd_seconds": round(c.spectrum.seconds, 4),
    }
    if choice.error is not None:
        d["output_error"] = round(float(choice.error), 6)
    if not layer.positions_known:
        d["note"] = "output shape unknown: FLOPs counted for one position"
    return d


# -- the error rule: per-layer output error on calibration data -------------------------------------


def _attach_error_probes(model: onnx.ModelProto, consts: Constants, layers: list[_Layer], feeds: list[Feed]) -> None:
    """Give each candidate an error function: the layer run alone with the rank-r weight ``p @ q``.

    The factorised pair computes the layer with weight ``p @ q`` exactly (both ops are linear in the
    weight), so the probe measures the error of the factorised layer. The error rule takes main-graph
    layers only, so every data input is a tensor of the main graph.
    """
    from ..graph.layer_probe import ProbeLayer, layer_probes

    rules = [get_rule(l.node.op_type) for l in layers]
    probes = layer_probes(model, [ProbeLayer(l.node, r.weight(l.node), l.weight, l.x_type) for l, r in zip(layers, rules)],
                          feeds, consts.tensor, "lowrank")
    for l, rule, probe in zip(layers, rules, probes):
        l.cand.error_fn = _rank_error(l, rule, probe)


def _rank_error(layer: _Layer, rule, probe: Callable[[np.ndarray], float]) -> Callable[[int], float]:
    def error(r: int) -> float:
        p, q = layer.cand.spectrum.factors(r)
        return probe(rule.from_matrix(layer.node, p @ q, layer.weight))

    return error
