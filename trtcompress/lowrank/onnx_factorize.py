"""Factorise the constant weights of an ONNX model by truncated SVD, on onnx-ir.

Each Conv/Gemm/MatMul whose op has a registered rule becomes two nodes (see ``onnx_rules``). Ranks
come from ``ranks.choose_ranks``; for the error rule, each layer's output error is measured with
ONNX Runtime on calibration data, feeding the layer the inputs it sees in the dense model.

The model is converted to onnx-ir once on entry and back once on exit (the stage interface is
``onnx.ModelProto``); onnx-ir is imported by the functions that use it.
"""
from __future__ import annotations

import dataclasses
import math
from typing import TYPE_CHECKING, Any, Callable, Iterable

import numpy as np
import onnx
from onnx import helper

from ..errors import ConfigError, DataError
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

    m = ir.from_proto(model)
    consts = Constants(m)
    with inferred_shapes(m):
        layers, skipped = _candidates(m, consts, config)
        macs_before = model_macs(m, infer=False)
    if config.rule == "error" and layers:
        _attach_error_probes(model, consts, layers, _calibration_feeds(model, config, calibration))
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


def _calibration_feeds(model: onnx.ModelProto, config: LowRankConfig, given: Iterable[Feed] | None) -> list[Feed]:
    if given is not None:
        feeds = list(given)
    else:
        if not config.calib:
            raise ConfigError("lowrank rule 'error' needs calibration data: set calib to a data spec (a .npz folder, an image folder with preprocess, or random:N)")
        from ..data import model_inputs
        from ..data.options import DataOptions, open_data

        options = DataOptions(batch=config.batch, limit=config.limit, seed=config.seed, preprocess=config.preprocess, inputs=config.inputs)
        feeds = list(open_data(config.calib, model_inputs(model), options))
    if not feeds:
        raise DataError("lowrank: the calibration data holds no samples")
    return feeds


def _session(model: onnx.ModelProto):
    from ..sessions import open_session

    return open_session(model)


def _attach_error_probes(model: onnx.ModelProto, consts: Constants, layers: list[_Layer], feeds: list[Feed]) -> None:
    """Record each layer's input on the dense model, then give each candidate an error function
    that runs the layer alone in ONNX Runtime with the rank-r weight ``p @ q``.

    The factorised pair computes the layer with weight ``p @ q`` exactly (both ops are linear in the
    weight), so the probe measures the error of the factorised layer. The error rule takes main-graph
    layers only, so every data input is a tensor of the main graph.
    """
    probe = onnx.ModelProto()
    probe.CopyFrom(model)
    existing = {o.name for o in probe.graph.output}
    names = []
    for l in layers:
        x = l.node.inputs[0]
        if x.name not in names:
            names.append(x.name)
        if x.name not in existing and consts.tensor(x) is None:
            probe.graph.output.append(helper.make_tensor_value_info(x.name, l.x_type, None))
    sess = _session(probe)
    inputs = {n: [] for n in names}
    for feed in feeds:
        for n, v in zip(names, sess.run(names, feed)):
            inputs[n].append(v)
    for i, l in enumerate(layers):
        l.cand.error_fn = _error_fn(model, consts, l, inputs[l.node.inputs[0].name], i)


def _error_fn(model: onnx.ModelProto, consts: Constants, layer: _Layer, xs: list[np.ndarray], index: int) -> Callable[[int], float]:
    import onnx_ir as ir

    node, rule = layer.node, get_rule(layer.node.op_type)
    w = rule.weight(node)
    inputs = [helper.make_tensor_value_info("x", layer.x_type, None), helper.make_tensor_value_info("w", int(consts.tensor(w).dtype), None)]
    inits = []
    new_inputs = []
    for j, value in enumerate(node.inputs):
        if j == 0:
            new_inputs.append("x")
        elif value is w:
            new_inputs.append("w")
        elif value is not None:
            t = consts.tensor(value)
            if t is None:
                raise DataError(f"lowrank: layer {layer.name!r} has a non-constant input {value.name!r} besides its data input")
            proto = ir.serde.serialize_tensor(t)
            proto.name = value.name
            inits.append(proto)
            new_inputs.append(value.name)
        else:
            new_inputs.append("")
    one = helper.make_node(node.op_type, new_inputs, ["y"])
    one.attribute.extend(ir.serde.serialize_attribute(a) for a in node.attributes.values())
    graph = helper.make_graph([one], f"probe{index}", inputs, [helper.make_tensor_value_info("y", layer.x_type, None)], inits)
    probe = helper.make_model(graph, opset_imports=list(model.opset_import), ir_version=model.ir_version)
    sess = _session(probe)
    ys = [sess.run(None, {"x": x, "w": layer.weight})[0] for x in xs]
    den = sum(float(np.sum(y.astype(np.float64) ** 2)) for y in ys) or 1.0
    spectrum = layer.cand.spectrum

    def error(r: int) -> float:
        p, q = spectrum.factors(r)
        w_r = rule.from_matrix(node, p @ q, layer.weight).astype(layer.weight.dtype)
        num = 0.0
        for x, y in zip(xs, ys):
            yr = sess.run(None, {"x": x, "w": w_r})[0]
            num += float(np.sum((yr.astype(np.float64) - y) ** 2))
        return math.sqrt(num / den)

    return error
