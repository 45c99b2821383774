"""Replace the float weights of Conv/Gemm/MatMul by shared values, in standard ONNX operators.

A shared weight is a uint8 index initializer and a float codebook, decoded by constant operators
that ONNX Runtime folds at session start (tested), so the session runs with ordinary weights while
the file holds one byte (packed: about ``bits`` bits or fewer) per weight. TensorRT is expected to
fold them at build time like any constant subgraph (not tested here: no TensorRT on this machine;
``polygraphy surgeon sanitize --fold-constants`` gives plain weights if a version does not):

- per layer: ``Gather(codebook[k], Cast(indices, int64))`` -> the weight's shape;
- per output channel: ``GatherElements(codebooks, Cast(indices, int64), axis)`` on the weight
  viewed as 2-D (channel axis first or last), then ``Reshape`` to the weight's shape.

Gather takes only int32/int64 indices, hence the Cast. The decoded value keeps the weight's name.
"""
from __future__ import annotations

from typing import Any, Iterable

import numpy as np
import onnx

from ..select import Patterns, check_all_used
from .config import ShareConfig
from .budget import MIN_ROW_PER_CLUSTER, Clustered, Layer, Measure, choose_counts
from .kmeans import kmeans_1d, kmeans_rows

__all__ = ["share_onnx", "cluster"]

Feed = dict[str, np.ndarray]


def _channel_axis(node, rank: int) -> int:
    """The weight's output-channel axis: 0 (Conv, Gemm transB) or last (MatMul, Gemm)."""
    if node.op_type == "Conv":
        return 0
    if node.op_type == "Gemm":
        attr = node.attributes.get("transB")
        return 0 if attr is not None and attr.as_int() else 1
    return rank - 1


def share_onnx(model: onnx.ModelProto, config: ShareConfig, calibration: Iterable[Feed] | None = None) -> tuple[onnx.ModelProto, dict[str, Any]]:
    """A copy of ``model`` with the chosen weights shared, and the per-layer report.

    ``calibration`` (feed dicts) overrides ``config.calib`` for the data-driven rules."""
    import onnx_ir as ir

    from ..graph._util import name_nodes

    ir_model = ir.from_proto(model)
    graph = ir_model.graph
    name_nodes(graph)
    include, exclude = Patterns(config.include), Patterns(config.exclude)
    counts = [(Patterns((p,)), k) for p, k in config.layer_counts()]
    candidates, layers, skipped, done = [], [], [], set()
    for node in list(graph):
        if node.op_type not in config.op_types or node.domain not in ("", "ai.onnx") or len(node.inputs) < 2:
            continue
        w = node.inputs[1]
        names = [node.name, node.op_type, node.outputs[0].name, w.name if w is not None else ""]
        candidates.append(names)
        why = _unshareable(w, config, done)
        if why is None and include and include.match(names) is None:
            why = "not matched by include"
        if why is None and exclude.match(names) is not None:
            why = f"excluded by {exclude.match(names)!r}"
        if why is not None:
            skipped.append({"layer": node.name, "weight": getattr(w, "name", None), "reason": why})
            continue
        fixed = next((k for p, k in counts if p.match(names) is not None), None)
        if fixed is None and config.rule == "bits":
            fixed = config.default_clusters()
        layers.append(Layer(node, w, w.const_value.numpy(), fixed, _row_length(node, w) if config.granularity == "channel" else None))
        done.add(w.name)
    check_all_used(include, candidates, "--include")
    check_all_used(exclude, candidates, "--exclude")
    for p, _ in counts:
        check_all_used(p, candidates, "--layer-bits")
    layers = [l for l in layers if not _too_short(l, l.fixed or 2 ** config.min_bits, skipped)]
    measure = _measure(model, layers, config, calibration)
    chosen = choose_counts(layers, config, measure, lambda layer, k: cluster(layer, k, config))
    reports = []
    for layer in layers:
        k, reason = chosen[layer.name]
        if k is None:
            skipped.append({"layer": layer.name, "weight": layer.w.name, "reason": reason})
        else:
            reports.append(_write(graph, layer, cluster(layer, k, config), config, measure))
    out = ir.to_proto(ir_model)
    return out, _summary(reports, skipped, config, measure)


def _too_short(layer: Layer, k: int, skipped: list[dict]) -> bool:
    if layer.row is None or layer.row >= MIN_ROW_PER_CLUSTER * k:
        return False
    skipped.append({"layer": layer.node.name, "weight": layer.w.name, "reason": f"per-channel codebooks of {k} values for rows of {layer.row} weights would cost about what they save; use --granularity layer or fewer clusters"})
    return True


def _measure(model: onnx.ModelProto, layers: list[Layer], config: ShareConfig, calibration: Iterable[Feed] | None) -> Measure:
    """How a layer's error is measured: on calibration data where the rule reads data and some is
    given (or the sensitivity needs it), at the layer's or the model's outputs; else the weight itself."""
    wants_data = config.rule == "error" or (config.rule == "size" and (config.calib or calibration is not None or config.sensitivity == "model"))
    if not wants_data or not layers:
        return Measure(None)
    from ..graph.layer_probe import calibration_feeds

    feeds = calibration_feeds(model, config, calibration, f"share rule {config.rule!r}")
    probes, where = SENSITIVITY_PROBES[config.sensitivity]
    return Measure({l.node.name: p for l, p in zip(layers, probes(model, layers, feeds, config))}, where)


def _layer_probes(model: onnx.ModelProto, layers: list[Layer], feeds: list[Feed], config: ShareConfig) -> list:
    from ..graph._util import const_tensor
    from ..graph.layer_probe import ProbeLayer, layer_probes

    return layer_probes(model, [ProbeLayer(l.node, l.w, l.weight, _x_type(l)) for l in layers], feeds, const_tensor, "share")


def _model_probes(model: onnx.ModelProto, layers: list[Layer], feeds: list[Feed], config: ShareConfig) -> list:
    from ..graph.output_probe import output_probes

    return output_probes(model, [l.w.name for l in layers], feeds, "share", config.threads)


# ShareConfig.sensitivity -> (probes of the layers, what the report says the error is measured on)
SENSITIVITY_PROBES = {
    "layer": (_layer_probes, "layer outputs on calibration data"),
    "model": (_model_probes, "model outputs on calibration data, one layer shared at a time"),
}


def _x_type(layer: Layer) -> int:
    x = layer.node.inputs[0]
    dtype = x.dtype if x is not None else None
    return int(dtype) if dtype is not None else onnx.helper.np_dtype_to_tensor_dtype(layer.weight.dtype)


def _row_length(node, w) -> int:
    """Weights per output channel (one per-channel codebook's row)."""
    shape = list(w.const_value.shape.numpy())
    axis = _channel_axis(node, len(shape))
    return int(np.prod(shape)) // int(shape[axis])


def _unshareable(w, config: ShareConfig, done: set[str]) -> str | None:
    import onnx_ir as ir

    if w is None or not w.is_initializer() or w.is_graph_input() or w.const_value is None:
        return "weight is not a constant initializer (a Constant node, an Identity or a graph input: leave normalize on, the verbs' default)"
    if w.name in done:
        return "weight already shared (used by an earlier layer)"
    if w.const_value.dtype not in (ir.DataType.FLOAT, ir.DataType.FLOAT16, ir.DataType.DOUBLE):
        return f"weight is {w.const_value.dtype.name}, not float"
    size = int(np.prod(w.const_value.shape.numpy()))
    if size < config.min_size:
        return f"weight has {size} elements (< min_size {config.min_size})"
    return None


def cluster(layer: Layer, k: int, config: ShareConfig) -> Clustered:
    """``layer``'s weight clustered into at most ``k`` values (after any pruning)."""
    weight = layer.weight
    work = weight.astype(np.float64)
    if config.prune > 0:
        cut = np.quantile(np.abs(work), config.prune)
        work = np.where(np.abs(work) <= cut, 0.0, work)
    if config.int8_grid:
        return _int8_grid(layer, k, work, config)
    if config.granularity == "layer":
        book, idx = kmeans_1d(work, k, config.init, config.iters, config.seed, config.keep_zeros)
        book = book.astype(weight.dtype)
        return Clustered(k, book, idx, book[idx], work)
    axis = _channel_axis(layer.node, weight.ndim)
    last = axis == weight.ndim - 1 and axis != 0
    rows = work.reshape(-1, weight.shape[-1]).T if last else work.reshape(weight.shape[0], -1)
    books, idx = kmeans_rows(rows, k, config.init, config.iters, config.seed, config.keep_zeros)
    books = books.astype(weight.dtype)
    decoded_rows = np.take_along_axis(books, idx.astype(np.int64), axis=1)
    decoded = (decoded_rows.T if last else decoded_rows).reshape(weight.shape)
    # stored as the weight viewed as 2-D, channel axis first or last
    return Clustered(k, np.ascontiguousarray(books.T if last else books), np.ascontiguousarray(idx.T if last else idx), decoded, work, last)


def _int8_grid(layer: Layer, k: int, work: np.ndarray, config: ShareConfig) -> Clustered:
    """Integer levels shared by the layer, times each output channel's INT8 scale.

    The scale is the quantizer's own (``weight_amax / 127``, float32), and each channel's largest
    |w| is exactly ±127 in its units, so ±127 stay levels: the decoded channel keeps its max |w| and
    quantize recomputes the same scale, rounding the decoded weight back to exactly these levels.
    """
    from ..quant.scales import scales_from_amax, weight_amax

    weight = layer.weight
    axis = _channel_axis(layer.node, weight.ndim)
    scale = scales_from_amax(weight_amax(work.astype(np.float32), axis))
    shape = [1] * weight.ndim
    shape[axis] = -1
    scale = scale.reshape(shape)
    units = work / scale.astype(np.float64)
    book, _ = kmeans_1d(units, k, config.init, config.iters, config.seed, config.keep_zeros)
    book = np.clip(np.round(book), -127, 127)
    if units.min() <= -126.5:
        book[np.argmin(book)] = -127
    if units.max() >= 126.5:
        book[np.argmax(book)] = 127
    book = np.unique(book)
    idx = np.searchsorted((book[1:] + book[:-1]) / 2, units).astype(np.uint8)  # nearest level; exact zeros stay 0
    levels = book.astype(weight.dtype)
    return Clustered(k, levels, idx, levels[idx] * scale.astype(weight.dtype), work, scale=scale.astype(weight.dtype))


def _write(graph, layer: Layer, c: Clustered, config: ShareConfig, measure: Measure) -> dict[str, Any]:
    """Put ``c`` in the graph in place of the layer's weight; the layer's report."""
    import onnx_ir as ir

    from ..graph._util import add_initializer

    w, weight = layer.w, layer.weight
    first = next(iter(graph))
    b = add_initializer(graph, c.book, f"{w.name}_codebook")
    i = add_initializer(graph, c.idx, f"{w.name}_indices")
    cast = ir.node("Cast", [i], {"to": ir.DataType.INT64}, name=f"{w.name}_share_cast")
    if config.granularity == "layer":
        nodes = [cast, ir.node("Gather", [b, cast.outputs[0]], {"axis": 0}, name=f"{w.name}_share_gather")]
        if c.scale is not None:  # levels times the channel's INT8 scale: the float32 product numpy computes
            s = add_initializer(graph, c.scale, f"{w.name}_share_scale")
            nodes.append(ir.node("Mul", [nodes[-1].outputs[0], s], name=f"{w.name}_share_scale_mul"))
    else:
        s = add_initializer(graph, np.array(weight.shape, np.int64), f"{w.name}_shape")
        gather = ir.node("GatherElements", [b, cast.outputs[0]], {"axis": 0 if c.last else 1}, name=f"{w.name}_share_gather")
        nodes = [cast, gather, ir.node("Reshape", [gather.outputs[0], s], name=f"{w.name}_share_reshape")]
    graph.insert_before(first, nodes)
    out = nodes[-1].outputs[0]
    out.shape, out.type = ir.Shape(weight.shape), ir.TensorType(w.const_value.dtype)
    name = w.name
    ir.convenience.replace_all_uses_with(w, out)
    graph.initializers.pop(name)
    out.name = name
    decoded = c.decoded.astype(np.float64)
    norm = np.linalg.norm(weight.astype(np.float64).ravel())
    err = np.linalg.norm((decoded - weight).ravel())
    share_err = np.linalg.norm((decoded - c.work).ravel())  # clustering alone, after any pruning
    report = {
        "layer": layer.node.name, "op": layer.node.op_type, "weight": name, "shape": list(weight.shape),
        "clusters": c.k, "codebook_size": int(c.book.size if config.granularity == "layer" else c.book.shape[0 if c.last else 1]),
        "bits": max(1, (c.k - 1).bit_length()),
        "zeros": float(np.mean(c.decoded == 0)),
        "rel_error": float(err / norm) if norm else 0.0,  # against the weight given (pruning included)
        "share_rel_error": float(share_err / norm) if norm else 0.0,
        "max_abs_error": float(np.max(np.abs(decoded - weight))),
        # what the codebook holds: integer levels on the INT8 grid (their count), or float values
        # (times a per-channel scale where the trained-centroid write-back kept a folded BatchNorm)
        "codebook": "int8_grid" if config.int8_grid else "float",
        **({"int8_levels": int(c.book.size)} if config.int8_grid else {}),
        **({"channel_scale": True} if c.scale is not None and not config.int8_grid else {}),
    }
    if measure.data:
        report["output_rel_error"] = measure.error(layer, c)
    return report


def _summary(layers: list[dict], skipped: list[dict], config: ShareConfig, measure: Measure) -> dict[str, Any]:
    n = sum(int(np.prod(l["shape"])) for l in layers)
    return {
        "rule": config.rule,
        **({"error_budget": config.error} if config.rule == "error" else {}),
        **({"mean_bits_budget": config.mean_bits} if config.rule == "size" else {}),
        **({"error_measured_on": measure.where} if config.rule != "bits" else {}),
        "layers_shared": len(layers),
        "weights_shared": n,
        "mean_bits": float(sum(l["bits"] * np.prod(l["shape"]) for l in layers) / n) if n else 0.0,
        "mean_rel_error": float(np.mean([l["rel_error"] for l in layers])) if layers else 0.0,
        "granularity": config.granularity,
        "init": config.init,
        "layers": layers,
        "skipped": skipped,
    }
