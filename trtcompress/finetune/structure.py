"""The structure the ONNX stages decided (2:4 masks, low-rank factor ranks), read from an ONNX
model and applied to the torch model it was exported from, so distillation trains the same
structure the ONNX side chose.

Reading (no torch): every Conv/ConvTranspose/Gemm/MatMul weight, in torch layout (output channels
first), whether it follows 2:4 (its zero pattern is the mask), and the low-rank pairs the
``lowrank`` stage wrote (nodes ``BASE/lowrank_a`` then ``BASE/lowrank_b``: rank = the first's
output channels). Shared weights (an earlier ``share``; read by :func:`trtcompress.share.read.read_shared`,
decoded) count for the low-rank pairs only: their centroids train, not a 2:4 mask.

Matching an ONNX layer to a torch module: the weight's name when it is the module's parameter
name (the dynamo exporter keeps them), checked by value; otherwise by value among modules of the
same weight shape. Values are compared row by row (per output channel) with |cosine|, which a
BatchNorm folded into the layer (a scale per output channel) leaves unchanged. A layer that
matches no module (channels reordered by ``sparsify --permute``, or an ONNX model that is not the
torch model's export) is a one-line error.
"""
from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from ..errors import ModelError
from ..sparsity.masks import GROUP, groups_violating

__all__ = ["OnnxLayer", "LowRankPair", "OnnxStructure", "read_structure", "row_cosine"]

# a 2:4 layer matches a module when the module's weight, masked by the layer's zeros, has this
# mean |cosine| per output channel with it (the right module gives 1 up to float rounding)
SPARSE_MATCH = 0.99
# a low-rank pair matches a module when its product P @ Q has this mean |cosine| per output channel
# with the module's weight: about sqrt(energy kept) for the right module (0.7..1), near 0 for others
LOWRANK_MATCH = 0.5
_PAIR = ("/lowrank_a", "/lowrank_b")


@dataclasses.dataclass
class OnnxLayer:
    name: str  # node name
    op: str
    weight_name: str
    weight: np.ndarray  # torch layout: [out, in, k...] (Conv, Gemm/MatMul as [out, in]); ConvTranspose as stored
    out_axis: int  # axis of output channels in ``weight`` (where a folded BatchNorm scales)
    follows_2to4: bool
    groups: int = 1
    shared: bool = False  # decoded from a codebook (share): pairs only, never masked


@dataclasses.dataclass
class LowRankPair:
    base: str  # the factorised node's name
    rank: int
    first: OnnxLayer  # applies Q: [rank, in, k...]
    second: OnnxLayer  # applies P: [out, rank, 1...]

    def dense(self) -> np.ndarray:
        """P @ Q in the dense layer's torch layout [out, in, k...]."""
        q, p = self.first.weight, self.second.weight
        m = p.reshape(p.shape[0], self.rank) @ q.reshape(self.rank, -1)
        return m.reshape((p.shape[0],) + q.shape[1:])


@dataclasses.dataclass
class OnnxStructure:
    layers: list[OnnxLayer]
    pairs: list[LowRankPair]

    @property
    def sparse(self) -> list[OnnxLayer]:
        return [l for l in self.layers if l.follows_2to4]

    def pair_of(self, layer: OnnxLayer) -> tuple[LowRankPair, str] | None:
        """The pair ``layer`` belongs to and its role (``first`` or ``second``), or None."""
        for p in self.pairs:
            if p.first is layer:
                return p, "first"
            if p.second is layer:
                return p, "second"
        return None


def read_structure(model: Any) -> OnnxStructure:
    """The weighted layers of ``model`` (an ONNX ModelProto) and its low-rank pairs."""
    from ..sparsity.graph import Constants, graph_nodes, load
    from ..sparsity.layers import view_layer

    graph_ir = load(model)
    consts = Constants(graph_ir)
    layers: list[OnnxLayer] = []
    for node, _scope in graph_nodes(graph_ir.graph):
        view = view_layer(consts, node)
        if view is None or isinstance(view, str) or view.weight.kind == "shared":
            continue
        w = view.weight.effective()
        if node.op_type in ("Gemm", "MatMul"):
            w = w if view.output_axis == 0 else w.T
            out_axis = 0
        else:
            out_axis = view.output_axis
        ok = view.in_channels % GROUP == 0 and groups_violating(view.weight.effective(), view.reduction_axis) == 0 and bool((w == 0).any())
        layers.append(OnnxLayer(view.name, node.op_type, view.weight.name, np.ascontiguousarray(w), out_axis, ok, view.groups))
    layers += _shared_layers(model, {l.name for l in layers})
    by_name = {l.name: l for l in layers}
    pairs = []
    for l in layers:
        if l.name.endswith(_PAIR[0]):
            base = l.name[: -len(_PAIR[0])]
            second = by_name.get(base + _PAIR[1])
            if second is not None:
                pairs.append(LowRankPair(base, int(l.weight.shape[0]), l, second))
    return OnnxStructure(layers, pairs)


def _shared_layers(model: Any, known: set[str]) -> list[OnnxLayer]:
    """The shared weights (every form ``share`` writes, the INT8 grid's ``Mul`` included), decoded."""
    import onnx

    from ..share.read import read_shared

    if not isinstance(model, onnx.ModelProto):
        return []
    return [OnnxLayer(s.node, s.op, s.weight_name, s.decoded(), 0, False, shared=True) for s in read_shared(model) if s.node not in known]


def row_cosine(a: np.ndarray, b: np.ndarray, out_axis: int = 0) -> float:
    """Mean over output channels of |cosine| between ``a`` and ``b`` (same shape)."""
    a2 = np.moveaxis(a, out_axis, 0).reshape(a.shape[out_axis], -1).astype(np.float64)
    b2 = np.moveaxis(b, out_axis, 0).reshape(b.shape[out_axis], -1).astype(np.float64)
    num = np.abs((a2 * b2).sum(1))
    den = np.linalg.norm(a2, axis=1) * np.linalg.norm(b2, axis=1)
    live = den > 0  # an all-zero channel says nothing either way
    return float((num[live] / den[live]).mean()) if live.any() else 0.0


def match(onnx_weight: np.ndarray, weight_name: str, out_axis: int, candidates: dict[str, np.ndarray], threshold: float, masked: bool, taken: set[str]) -> tuple[str, float] | None:
    """The module (name, score) among ``candidates`` (module name -> torch weight) whose weight is
    this ONNX layer's; ``masked`` compares against the torch weight zeroed where the ONNX one is."""
    keep = onnx_weight != 0

    def score(w: np.ndarray) -> float:
        return row_cosine(onnx_weight, w * keep if masked else w, out_axis)

    named = weight_name.removesuffix(".weight")
    if weight_name.endswith(".weight") and named in candidates and named not in taken and candidates[named].shape == onnx_weight.shape:
        s = score(candidates[named])
        if s >= threshold:
            return named, s
    best = max(((score(w), n) for n, w in candidates.items() if n not in taken and w.shape == onnx_weight.shape), default=None)
    if best is None or best[0] < threshold:
        return None
    return best[1], best[0]


def unmatched_error(layer: str, what: str) -> ModelError:
    return ModelError(
        f"finetune: ONNX layer {layer!r} ({what}) matches no layer of the torch model; the torch model must be the one "
        "the ONNX model was exported from, and sparsify must not reorder channels (permute=false) before finetune"
    )
