"""Read back what the ``share`` stage wrote: each shared weight's indices, codebook(s) and INT8-grid
scale, in the torch layout (output channels first), for training its centroids on the torch side.

The forms read are the ones :mod:`trtcompress.share.onnx_share` writes:
``Gather(codebook, Cast(indices))`` per layer, optionally times a per-channel ``Mul`` scale (the INT8
grid), and ``Reshape(GatherElements(codebooks, Cast(indices), axis))`` per channel.
"""
from __future__ import annotations

import dataclasses

import numpy as np
import onnx
from onnx import numpy_helper

__all__ = ["SHARE_OPS", "SharedLayer", "read_shared"]

SHARE_OPS = ("Conv", "Gemm", "MatMul")


@dataclasses.dataclass
class SharedLayer:
    """One shared weight. ``idx`` [out, ...] and ``book`` ([k] per layer, [out, k] per channel) in
    the torch layout; ``scale`` [out] (the INT8 grid's, or a fold the trained-centroid write-back
    kept: see :attr:`int8_grid`) or None; ``weight`` = the decoded ONNX weight in
    the torch layout: ``book[idx] * scale``."""

    node: str
    op: str
    weight_name: str  # the decoded value's name (the compute node's weight input)
    onnx_shape: tuple[int, ...]
    transposed: bool  # the ONNX weight is [in, out] (MatMul, Gemm without transB)
    per_channel: bool
    idx: np.ndarray
    book: np.ndarray
    scale: np.ndarray | None

    @property
    def k(self) -> int:
        return int(self.book.shape[-1])

    @property
    def int8_grid(self) -> bool:
        """Integer levels on each channel's INT8 grid (``share --int8-grid``): a scale, and levels that
        are integers reaching ±127 (the level that carries each channel's scale). A float codebook
        times a per-channel scale (the trained-centroid write-back of a layer with a folded
        BatchNorm) is not on the grid."""
        return (self.scale is not None and not self.per_channel and bool(np.all(self.book == np.round(self.book)))
                and float(np.abs(self.book).max(initial=0.0)) == 127.0)

    def decoded(self) -> np.ndarray:
        """``book[idx] * scale`` in the torch layout (float32, the arithmetic the runtimes fold)."""
        if self.per_channel:
            w = np.take_along_axis(self.book, self.idx.reshape(len(self.idx), -1), axis=1).reshape(self.idx.shape)
        else:
            w = self.book[self.idx]
        if self.scale is not None:
            w = w * self.scale.reshape((-1,) + (1,) * (w.ndim - 1))
        return w.astype(np.float32)


def read_shared(model: onnx.ModelProto) -> list[SharedLayer]:
    """Every shared Conv/Gemm/MatMul weight of ``model``'s main graph, in node order."""
    g = model.graph
    inits = {t.name: t for t in g.initializer}
    producers = {o: n for n in g.node for o in n.output}
    arr = lambda name: numpy_helper.to_array(inits[name]) if name in inits else None
    out = []
    for node in g.node:
        if node.op_type not in SHARE_OPS or node.domain not in ("", "ai.onnx") or len(node.input) < 2:
            continue
        found = _decode(node.input[1], producers, arr)
        if found is None:
            continue
        book, idx, scale, per_channel, last = found
        transposed = node.op_type == "MatMul" or (node.op_type == "Gemm" and not _attr(node, "transB", 0))
        if transposed and idx.ndim != 2:
            continue  # a batched MatMul weight has no torch Linear to train
        shape = tuple(int(d) for d in (idx.shape if not per_channel else _reshaped(node.input[1], producers, arr)))
        if per_channel:
            idx2 = idx.T if last else idx  # [out, row]
            books = book.T if last else book  # [out, k]
            t_shape = (shape[-1], shape[0]) if transposed else shape
            idx_t = idx2.reshape(t_shape)
            book_t = books
        else:
            idx_t = idx.T if transposed else idx
            book_t = book
        if scale is not None:
            scale = np.asarray(scale, np.float32).reshape(-1)
            if scale.size == 1:
                scale = np.full(idx_t.shape[0], scale[0], np.float32)
        out.append(SharedLayer(node.name, node.op_type, node.input[1], shape, transposed, per_channel,
                               np.ascontiguousarray(idx_t), np.ascontiguousarray(book_t), scale))
    return out


def _attr(node, name: str, default: int) -> int:
    for a in node.attribute:
        if a.name == name:
            return int(a.i)
    return default


def _decode(value: str, producers, arr):
    """(book, stored indices, scale or None, per_channel, channel axis last) of a decoded weight."""
    node = producers.get(value)
    scale = None
    if node is not None and node.op_type == "Mul":
        scale = arr(node.input[1])
        node = producers.get(node.input[0])
        if scale is None:
            return None
    per_channel = node is not None and node.op_type == "Reshape"
    if per_channel:
        if scale is not None:
            return None
        node = producers.get(node.input[0])
    if node is None or node.op_type != ("GatherElements" if per_channel else "Gather"):
        return None
    book, cast = arr(node.input[0]), producers.get(node.input[1])
    if book is None or cast is None or cast.op_type != "Cast":
        return None
    idx = arr(cast.input[0])
    if idx is None or idx.dtype != np.uint8:
        return None
    last = per_channel and _attr(node, "axis", 0) == 0
    if per_channel and book.ndim != 2:
        return None
    return book, idx, scale, per_channel, last


def _reshaped(value: str, producers, arr) -> tuple[int, ...]:
    node = producers[value]
    return tuple(int(d) for d in arr(node.input[1]))
