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

from typing import Any

import numpy as np
import onnx

from ..select import Patterns, check_all_used
from .config import ShareConfig
from .kmeans import kmeans_1d, kmeans_rows

__all__ = ["share_onnx"]


def _channel_axis(node, rank: int) -> int:
    """The weight's output-channel axis: 0 (Conv, Gemm transB) or last (MatMul, Gemm)."""
    if node.op_type == "Conv":
        return 0
    if node.op_type == "Gemm":
        attr = node.attributes.get("transB")
        return 0 if attr is not None and attr.as_int() else 1
    return rank - 1


def share_onnx(model: onnx.ModelProto, config: ShareConfig) -> tuple[onnx.ModelProto, dict[str, Any]]:
    """A copy of ``model`` with the chosen weights shared, and the per-layer report."""
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
        k = next((k for p, k in counts if p.match(names) is not None), config.default_clusters())
        row = _row_length(node, w) if config.granularity == "channel" else None
        if row is not None and row < _MIN_ROW_PER_CLUSTER * k:
            skipped.append({"layer": node.name, "weight": w.name, "reason": f"per-channel codebooks of {k} values for rows of {row} weights would cost about what they save; use --granularity layer or fewer clusters"})
            continue
        layers.append(_share(graph, node, w, k, config))
        done.add(w.name)
    check_all_used(include, candidates, "--include")
    check_all_used(exclude, candidates, "--exclude")
    for p, _ in counts:
        check_all_used(p, candidates, "--layer-bits")
    out = ir.to_proto(ir_model)
    return out, _summary(layers, skipped, config)


# per channel, a row shorter than this many weights per cluster stays float: its float codebook
# costs 4k bytes against the row's 3 bytes per weight saved (EfficientNet-Lite0's depthwise rows of
# 9 or 25 weights made the packed model 3.6x smaller instead of more, measured 2026-12-03)
_MIN_ROW_PER_CLUSTER = 4


def _row_length(node, w) -> int:
    shape = list(w.const_value.shape.numpy())
    axis = _channel_axis(node, len(shape))
    return int(np.prod(shape)) // int(shape[axis])


def _unshareable(w, config: ShareConfig, done: set[str]) -> str | None:
    import onnx_ir as ir

    if w is None or not w.is_initializer() or w.is_graph_input() or w.const_value is None:
        return "weight is not a constant initializer"
    if w.name in done:
        return "weight already shared (used by an earlier layer)"
    if w.const_value.dtype not in (ir.DataType.FLOAT, ir.DataType.FLOAT16, ir.DataType.DOUBLE):
        return f"weight is {w.const_value.dtype.name}, not float"
    size = int(np.prod(w.const_value.shape.numpy()))
    if size < config.min_size:
        return f"weight has {size} elements (< min_size {config.min_size})"
    return None


def _share(graph, node, w, k: int, config: ShareConfig) -> dict[str, Any]:
    import onnx_ir as ir

    from ..graph._util import add_initializer

    weight = w.const_value.numpy()
    work = weight.astype(np.float64)
    if config.prune > 0:
        cut = np.quantile(np.abs(work), config.prune)
        work = np.where(np.abs(work) <= cut, 0.0, work)
    first = next(iter(graph))
    if config.granularity == "layer":
        book, idx = kmeans_1d(work, k, config.init, config.iters, config.seed, config.keep_zeros)
        book = book.astype(weight.dtype)
        decoded = book[idx]
        b = add_initializer(graph, book, f"{w.name}_codebook")
        i = add_initializer(graph, idx, f"{w.name}_indices")
        cast = ir.node("Cast", [i], {"to": ir.DataType.INT64}, name=f"{w.name}_share_cast")
        gather = ir.node("Gather", [b, cast.outputs[0]], {"axis": 0}, name=f"{w.name}_share_gather")
        nodes = [cast, gather]
    else:
        axis = _channel_axis(node, weight.ndim)
        last = axis == weight.ndim - 1 and axis != 0
        rows = work.reshape(-1, weight.shape[-1]).T if last else work.reshape(weight.shape[0], -1)
        books, idx = kmeans_rows(rows, k, config.init, config.iters, config.seed, config.keep_zeros)
        books = books.astype(weight.dtype)
        decoded_rows = np.take_along_axis(books, idx.astype(np.int64), axis=1)
        decoded = (decoded_rows.T if last else decoded_rows).reshape(weight.shape)
        idx2 = np.ascontiguousarray(idx.T if last else idx)  # the weight viewed as 2-D
        books2 = np.ascontiguousarray(books.T if last else books)
        b = add_initializer(graph, books2, f"{w.name}_codebook")
        i = add_initializer(graph, idx2, f"{w.name}_indices")
        s = add_initializer(graph, np.array(weight.shape, np.int64), f"{w.name}_shape")
        cast = ir.node("Cast", [i], {"to": ir.DataType.INT64}, name=f"{w.name}_share_cast")
        gather = ir.node("GatherElements", [b, cast.outputs[0]], {"axis": 0 if last else 1}, name=f"{w.name}_share_gather")
        reshape = ir.node("Reshape", [gather.outputs[0], s], name=f"{w.name}_share_reshape")
        nodes = [cast, gather, reshape]
    graph.insert_before(first, nodes)
    out = nodes[-1].outputs[0]
    out.shape, out.type = ir.Shape(weight.shape), ir.TensorType(w.const_value.dtype)
    name = w.name
    ir.convenience.replace_all_uses_with(w, out)
    graph.initializers.pop(name)
    out.name = name
    err = np.linalg.norm((decoded.astype(np.float64) - weight).ravel())
    norm = np.linalg.norm(weight.astype(np.float64).ravel())
    share_err = np.linalg.norm((decoded.astype(np.float64) - work).ravel())  # clustering alone, after any pruning
    return {
        "layer": node.name, "op": node.op_type, "weight": name, "shape": list(weight.shape),
        "clusters": k, "codebook_size": int(book.size if config.granularity == "layer" else books.shape[1]),
        "bits": max(1, (k - 1).bit_length()),
        "zeros": float(np.mean(decoded == 0)),
        "rel_error": float(err / norm) if norm else 0.0,  # against the weight given (pruning included)
        "share_rel_error": float(share_err / norm) if norm else 0.0,
        "max_abs_error": float(np.max(np.abs(decoded.astype(np.float64) - weight))),
    }


def _summary(layers: list[dict], skipped: list[dict], config: ShareConfig) -> dict[str, Any]:
    n = sum(int(np.prod(l["shape"])) for l in layers)
    return {
        "layers_shared": len(layers),
        "weights_shared": n,
        "mean_bits": float(sum(l["bits"] * np.prod(l["shape"]) for l in layers) / n) if n else 0.0,
        "mean_rel_error": float(np.mean([l["rel_error"] for l in layers])) if layers else 0.0,
        "granularity": config.granularity,
        "init": config.init,
        "layers": layers,
        "skipped": skipped,
    }
