"""Write trained centroids back in the shared ONNX form, with the indices the ``share`` stage chose.

The fine-tuned student is exported and normalised like any other (BatchNorm folded into the
weights); each shared layer's exported weight is then ``book[idx] * s`` per output channel exactly,
``s`` being the torch factor times whatever normalize folded in. ``s`` is refitted per channel by
least squares (exact up to float32 rounding, reported as ``rel_error``), and the layer is written
as the share stage writes it: indices unchanged, the trained codebook, and the per-channel scale as
the INT8 grid's ``Mul`` (per-layer codebooks; omitted when every ``s`` is 1) or folded into the
per-channel codebooks. A later ``quantize`` of an INT8-grid layer finds exactly the trained levels.
"""
from __future__ import annotations

from typing import Any

import numpy as np
import onnx

from ..errors import ModelError
from ..finetune.structure import match
from .budget import Clustered, Layer, Measure
from .config import ShareConfig
from .onnx_share import _write
from .read import SharedLayer

__all__ = ["TrainedLayer", "reshare"]

# the exported weight of a shared layer is the trained one times a per-channel fold: |cosine| 1
_EXPORT_MATCH = 0.999
_UNIT = 1e-6  # a refitted scale this close to 1 everywhere writes no Mul


class TrainedLayer:
    """A shared layer after training: its incoming form, codebook (torch layout) and trained weight."""

    def __init__(self, layer: SharedLayer, book: np.ndarray, weight: np.ndarray):
        self.layer, self.book, self.weight = layer, book, weight

    def values(self) -> np.ndarray:
        idx = self.layer.idx
        if self.layer.per_channel:
            return np.take_along_axis(self.book, idx.reshape(len(idx), -1), axis=1).reshape(idx.shape)
        return self.book[idx]


def reshare(exported: onnx.ModelProto, trained: list[TrainedLayer]) -> tuple[onnx.ModelProto, dict[str, Any]]:
    """``exported`` with each trained layer's weight written back shared; the per-layer report."""
    import onnx_ir as ir

    from ..graph._util import name_nodes

    model = ir.from_proto(exported)
    graph = model.graph
    name_nodes(graph)
    dense: dict[str, tuple[Any, Any, np.ndarray, bool]] = {}  # node name -> (node, weight value, torch-layout weight, transposed)
    for node in graph:
        if node.op_type not in ("Conv", "Gemm", "MatMul") or len(node.inputs) < 2:
            continue
        w = node.inputs[1]
        if w is None or not w.is_initializer() or w.const_value is None:
            continue
        arr = w.const_value.numpy()
        transposed = node.op_type == "MatMul" or (node.op_type == "Gemm" and not (node.attributes.get("transB") and node.attributes["transB"].as_int()))
        if transposed and arr.ndim != 2:
            continue
        dense[node.name] = (node, w, arr.T if transposed else arr, transposed)
    taken: set[str] = set()
    layers = []
    for t in trained:
        found = match(t.weight, "", 0, {n: d[2] for n, d in dense.items()}, _EXPORT_MATCH, False, taken)
        if found is None:
            raise ModelError(f"finetune: the exported model has no layer with the trained weight of shared layer {t.layer.node!r}; "
                             "the export changed the layer (report this with the model)")
        taken.add(found[0])
        node, w, weight_t, transposed = dense[found[0]]
        layers.append(_rewrite(graph, node, w, weight_t, transposed, t))
    return ir.to_proto(model), {"layers": layers}


def _rewrite(graph, node, w, weight_t: np.ndarray, transposed: bool, t: TrainedLayer) -> dict[str, Any]:
    """Write ``t`` over the exported layer ``node`` (weight ``w``); the layer's report."""
    out = weight_t.shape[0]
    v = t.values().reshape(out, -1).astype(np.float64)
    e = weight_t.reshape(out, -1).astype(np.float64)
    den = (v * v).sum(1)
    s = np.where(den > 0, (v * e).sum(1) / np.where(den > 0, den, 1.0), 1.0)
    dtype = w.const_value.numpy().dtype
    book = t.book.astype(dtype)
    idx = t.layer.idx.astype(np.uint8)
    bshape = (-1,) + (1,) * (idx.ndim - 1)
    if t.layer.per_channel:
        books = (book * s[:, None]).astype(dtype)  # [out, k]
        decoded_t = np.take_along_axis(books, idx.reshape(out, -1).astype(np.int64), axis=1).reshape(idx.shape)
        stored_idx = idx.reshape(out, -1).T if transposed else idx.reshape(out, -1)
        stored_book = books.T if transposed else books
        c = Clustered(t.layer.k, np.ascontiguousarray(stored_book), np.ascontiguousarray(stored_idx), None, None, last=transposed)
        config = ShareConfig(granularity="channel")
    else:
        scale = None
        if t.layer.scale is not None or np.max(np.abs(s - 1.0)) > _UNIT:
            scale = s.astype(dtype).reshape(bshape)
        decoded_t = book[idx] * (scale if scale is not None else 1)
        stored_idx = idx.T if transposed else idx
        stored_scale = None if scale is None else (scale.reshape(1, -1) if transposed else scale)
        c = Clustered(t.layer.k, book, np.ascontiguousarray(stored_idx), None, None, scale=stored_scale)
        config = ShareConfig(granularity="layer", int8_grid=t.layer.int8_grid)
    decoded = decoded_t.T if transposed else decoded_t
    c.decoded = np.ascontiguousarray(decoded.astype(dtype))
    c.work = weight_t.T if transposed else weight_t
    weight = np.asarray(c.work)
    report = _write(graph, Layer(node, w, weight, t.layer.k, None), c, config, Measure(None))
    return {"layer": t.layer.node, "exported_as": node.name, "rel_error": report["rel_error"],
            "scale_written": not t.layer.per_channel and c.scale is not None,
            **{k: report[k] for k in ("codebook", "int8_levels") if k in report}}
