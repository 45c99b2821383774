"""Per-layer sparsity facts of any ONNX model: does each weight follow 2:4, and could TensorRT use it.

Weights are read as the compute node sees them: float constants, int8 constants behind a
DequantizeLinear (zero = the zero point), or float constants behind a QuantizeLinear ->
DequantizeLinear pair (the check runs on the quantized values, as TensorRT would see them).
"""
from __future__ import annotations

import dataclasses
from typing import Any

from typing import TYPE_CHECKING

import numpy as np

from .graph import Constants, graph_nodes, layer_name, load
from .layers import LayerView, layer_rules, trt_ineligibility, view_layer
from .masks import GROUP, groups_violating

if TYPE_CHECKING:
    import onnx
    import onnx_ir as ir

__all__ = ["LayerInfo", "inspect_layers", "summarize"]


@dataclasses.dataclass(frozen=True)
class LayerInfo:
    layer: str
    op: str
    weight: str | None
    shape: tuple[int, ...] | None
    params: int
    dtype: str | None
    quantized: bool
    sparsity: float  # share of weights equal to zero
    follows_2to4: bool
    groups_violating: int  # groups of 4 along the reduction axis with more than 2 non-zeros
    trt_eligible: bool  # TensorRT would consider sparse kernels if the weights follow 2:4
    reason: str | None  # why not eligible
    scope: str = ""  # the If/Loop/Scan body holding the layer ("" for the main graph)

    @property
    def sparse_ready(self) -> bool:
        return self.trt_eligible and self.follows_2to4

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["shape"] = list(self.shape) if self.shape is not None else None
        d["sparse_ready"] = self.sparse_ready
        return d


def _info(view: LayerView, scope: str = "") -> LayerInfo:
    eff = view.weight.effective()
    reason = trt_ineligibility(view)
    axis_ok = view.in_channels % GROUP == 0
    bad = groups_violating(eff, view.reduction_axis) if axis_ok else -1
    return LayerInfo(
        layer=view.name,
        op=view.node.op_type,
        weight=view.weight.name,
        shape=view.shape,
        params=int(eff.size),
        dtype=str(view.weight.values.dtype),
        quantized=view.weight.quantized,
        sparsity=float(np.count_nonzero(eff == 0) / eff.size) if eff.size else 0.0,
        follows_2to4=axis_ok and bad == 0,
        groups_violating=bad,
        trt_eligible=reason is None,
        reason=reason,
        scope=scope,
    )


def inspect_layers(model: onnx.ModelProto | ir.Model) -> list[LayerInfo]:
    """One :class:`LayerInfo` per Conv, ConvTranspose, Gemm and MatMul node, in graph order (the
    main graph's, then those inside If/Loop/Scan bodies). Reads, never writes, ``model``."""
    graph_ir = load(model)
    consts = Constants(graph_ir)
    out = []
    for node, scope in graph_nodes(graph_ir.graph):
        view = view_layer(consts, node)
        if view is None:
            continue
        if isinstance(view, str):
            out.append(LayerInfo(layer_name(node), node.op_type, None, None, 0, None, False, 0.0, False, -1, False, view, scope))
        else:
            out.append(_info(view, scope))
    return out


def summarize(layers: list[LayerInfo]) -> dict[str, Any]:
    weighted = [l for l in layers if l.shape is not None]
    params = sum(l.params for l in weighted)
    zeros = sum(round(l.params * l.sparsity) for l in weighted)
    return {
        "layers": len(layers),
        "layers_with_constant_weights": len(weighted),
        "layers_2to4": sum(l.follows_2to4 for l in weighted),
        "layers_trt_eligible": sum(l.trt_eligible for l in weighted),
        "layers_sparse_ready": sum(l.sparse_ready for l in weighted),
        "params": params,
        "sparsity": zeros / params if params else 0.0,
        "params_2to4": sum(l.params for l in weighted if l.follows_2to4),
        "op_types": list(layer_rules()),
    }
