"""Factorise the constant weights of an ONNX model by truncated SVD.

Each Conv/Gemm/MatMul whose op has a registered rule becomes two nodes (see ``onnx_rules``). Ranks
come from ``ranks.choose_ranks``; for the error rule, each layer's output error is measured with
ONNX Runtime on calibration data, feeding the layer the inputs it sees in the dense model.
"""
from __future__ import annotations

import dataclasses
import math
from typing import Any, Callable, Iterable

import numpy as np
import onnx
from onnx import helper

from ..errors import ConfigError, DataError
from ..model_io import parameter_count
from ..subgraphs import used_names, walk
from ..weightless import ort_session
from .config import LowRankConfig
from .flops import model_macs
from .graph import GraphInfo
from .onnx_rules import get_rule
from .ranks import Candidate, choose_ranks, excluded
from .svd import Spectrum

__all__ = ["factorize_onnx", "LowRankResult"]

Feed = dict[str, np.ndarray]


@dataclasses.dataclass
class LowRankResult:
    model: onnx.ModelProto
    report: dict[str, Any]


@dataclasses.dataclass
class _Layer:
    node: onnx.NodeProto
    name: str
    weight: np.ndarray
    cand: Candidate
    positions_known: bool


def factorize_onnx(model: onnx.ModelProto, config: LowRankConfig, calibration: Iterable[Feed] | None = None) -> LowRankResult:
    """Return a factorised copy of ``model`` and a report; ``model`` is left unchanged.

    ``calibration`` (feed dicts) overrides ``config.calib`` for the error rule.
    """
    out = onnx.ModelProto()
    out.CopyFrom(model)
    info = GraphInfo.of(out)
    layers, skipped = _candidates(out, info, config)
    if config.rule == "error" and layers:
        _attach_error_probes(out, info, layers, _calibration_feeds(out, config, calibration))
    choices = choose_ranks([l.cand for l in layers], config)

    macs_before = model_macs(out, info)
    new_nodes: list[onnx.NodeProto] = []
    chosen = {c.name: c for c in choices}
    by_node = {id(l.node): l for l in layers}
    per_layer = []
    # a layer inside an If/Loop/Scan body is rewritten in its own graph; its factors are main-graph
    # initialisers, which every subgraph can read
    for graph in reversed([g for g, _ in walk(out.graph)]):  # bodies before the nodes holding them
        new_nodes = []
        for node in graph.node:
            layer = by_node.get(id(node))
            choice = chosen.get(layer.name) if layer else None
            if layer is None or choice is None or choice.rank is None:
                new_nodes.append(node)
                if layer is not None and choice is not None:
                    skipped.append({"name": layer.name, "op": node.op_type, "reason": choice.reason})
                continue
            rule = get_rule(node.op_type)
            p, q = layer.cand.spectrum.factors(choice.rank)
            rw = rule.rewrite(node, p, q, tuple(layer.weight.shape), layer.weight.dtype)
            new_nodes.extend(rw.nodes)
            out.graph.initializer.extend(rw.initializers)
            per_layer.append(_layer_report(layer, choice))
        if any(n is not m for n, m in zip(new_nodes, graph.node)) or len(new_nodes) != len(graph.node):
            del graph.node[:]
            graph.node.extend(new_nodes)
    _drop_unused_initializers(out)

    macs_after = model_macs(out)
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


def _candidates(model: onnx.ModelProto, info: GraphInfo, config: LowRankConfig) -> tuple[list[_Layer], list[dict]]:
    layers, skipped = [], []
    for i, (node, scope) in enumerate((n, s) for g, s in walk(model.graph) for n in g.node):
        if node.op_type not in config.ops:
            continue
        name = node.name or node.output[0]
        rule = get_rule(node.op_type)
        if rule is None:
            continue
        if scope and config.rule == "error":
            skipped.append({"name": name, "op": node.op_type, "reason": f"inside {scope}: the error rule cannot read a subgraph's tensors; use the energy or rank rule"})
            continue
        if excluded(name, config.exclude, node.op_type):
            skipped.append({"name": name, "op": node.op_type, "reason": "excluded by the config"})
            continue
        reason = rule.skip_reason(node, info)
        if reason:
            skipped.append({"name": name, "op": node.op_type, "reason": reason})
            continue
        w = info.constant(rule.weight_name(node, info))
        m = rule.matrix(node, w)
        pos = rule.positions(node, info)
        spectrum = Spectrum(m, config.svd, config.randomized_min_dim, config.oversample, config.power_iters, config.seed + i)
        cand = Candidate(name, node.op_type, m.shape[0], m.shape[1], pos or 1, spectrum)
        layers.append(_Layer(node, name, w, cand, pos is not None))
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


def _drop_unused_initializers(model: onnx.ModelProto) -> None:
    """Drop initialisers and Constant nodes (a factorised weight) that nothing reads any more."""
    used = used_names(model.graph)
    keep = [t for t in model.graph.initializer if t.name in used]
    del model.graph.initializer[:]
    model.graph.initializer.extend(keep)
    for graph, scope in walk(model.graph):
        if scope:
            used = used_names(graph)
            dead = [k for k, n in enumerate(graph.node) if n.op_type == "Constant" and n.output and n.output[0] not in used]
            for k in reversed(dead):
                del graph.node[k]


# -- the error rule: per-layer output error on calibration data -------------------------------------


def _calibration_feeds(model: onnx.ModelProto, config: LowRankConfig, given: Iterable[Feed] | None) -> list[Feed]:
    if given is not None:
        feeds = list(given)
    else:
        if not config.calib:
            raise ConfigError("lowrank rule 'error' needs calibration data: set calib to a data spec (a .npz folder, an image folder with preprocess, or random:N)")
        from ..data import PreprocessConfig, model_inputs, open_source
        from ..data.readers import ReaderOptions

        pre = PreprocessConfig.parse(config.preprocess) if config.preprocess else None
        from ..specs import parse_input_specs

        shapes = {s.name: s.concrete_shape(config.batch) for s in parse_input_specs(config.inputs)} or None
        opts = ReaderOptions(batch_size=config.batch, limit=config.limit, seed=config.seed, preprocess=pre, shapes=shapes, batches=max(1, math.ceil((config.limit or 32) / config.batch)))
        feeds = list(open_source(config.calib, model_inputs(model), opts))
    if not feeds:
        raise DataError("lowrank: the calibration data holds no samples")
    return feeds


def _session(model: onnx.ModelProto):
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.log_severity_level = 3
    return ort_session(model, so)


def _attach_error_probes(model: onnx.ModelProto, info: GraphInfo, layers: list[_Layer], feeds: list[Feed]) -> None:
    """Record each layer's input on the dense model, then give each candidate an error function
    that runs the layer alone in ONNX Runtime with the rank-r weight ``p @ q``.

    The factorised pair computes the layer with weight ``p @ q`` exactly (both ops are linear in the
    weight), so the probe measures the error of the factorised layer.
    """
    probe = onnx.ModelProto()
    probe.CopyFrom(model)
    existing = {o.name for o in probe.graph.output}
    names = []
    for l in layers:
        x = l.node.input[0]
        if x not in names:
            names.append(x)
        if x not in existing and x not in info.initializers:
            probe.graph.output.append(helper.make_tensor_value_info(x, info.elem_types.get(x, onnx.TensorProto.FLOAT), None))
    sess = _session(probe)
    inputs = {n: [] for n in names}
    for feed in feeds:
        for n, v in zip(names, sess.run(names, feed)):
            inputs[n].append(v)
    for i, l in enumerate(layers):
        l.cand.error_fn = _error_fn(model, info, l, inputs[l.node.input[0]], i)


def _error_fn(model: onnx.ModelProto, info: GraphInfo, layer: _Layer, xs: list[np.ndarray], index: int) -> Callable[[int], float]:
    node, rule = layer.node, get_rule(layer.node.op_type)
    w_name = rule.weight_name(node, info)
    elem = info.elem_types.get(node.input[0], onnx.TensorProto.FLOAT)
    inputs = [helper.make_tensor_value_info("x", elem, None), helper.make_tensor_value_info("w", info.initializers[w_name].data_type, None)]
    inits = []
    new_inputs = []
    for j, name in enumerate(node.input):
        if j == 0:
            new_inputs.append("x")
        elif name == w_name:
            new_inputs.append("w")
        elif name:
            if name not in info.initializers:
                raise DataError(f"lowrank: layer {layer.name!r} has a non-constant input {name!r} besides its data input")
            t = onnx.TensorProto()
            t.CopyFrom(info.initializers[name])
            inits.append(t)
            new_inputs.append(name)
        else:
            new_inputs.append("")
    one = helper.make_node(node.op_type, new_inputs, ["y"], **{a.name: helper.get_attribute_value(a) for a in node.attribute})
    graph = helper.make_graph([one], f"probe{index}", inputs, [helper.make_tensor_value_info("y", elem, None)], inits)
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
