"""Remove nodes that compute nothing at inference: Dropout, Cast to the same type, Reshape to the
same shape. (Identity is onnx-ir's ``IdentityEliminationPass``, run right after this one.)

A no-op feeding a graph output stays: removing it would rename an output the user relies on.
"""
from __future__ import annotations

import onnx_ir as ir

from ._util import bypass, const_array, int_attr

__all__ = ["RemoveNoOpsPass"]


class RemoveNoOpsPass(ir.passes.InPlacePass):
    """``self.removed`` maps op type to how many were removed."""

    def __init__(self) -> None:
        super().__init__()
        self.removed: dict[str, int] = {}

    def call(self, model: ir.Model) -> ir.passes.PassResult:
        self.removed = {}
        graph = model.graph
        for node in list(graph):
            if node.domain not in ("", "ai.onnx"):
                continue
            check = _CHECKS.get(node.op_type)
            if check is not None and check(node) and bypass(graph, node, node.inputs[0]):
                self.removed[node.op_type] = self.removed.get(node.op_type, 0) + 1
        return ir.passes.PassResult(model, modified=bool(self.removed))


def _dropout(node: ir.Node) -> bool:
    # inference unless training_mode (input 2) is a constant true; the mask output must be unused
    if len(node.inputs) > 2 and node.inputs[2] is not None:
        mode = const_array(node.inputs[2])
        if mode is None or bool(mode):
            return False
    return len(node.outputs) < 2 or not (node.outputs[1].uses() or node.outputs[1].is_graph_output())


def _cast(node: ir.Node) -> bool:
    src = node.inputs[0].dtype if node.inputs[0] is not None else None
    return src is not None and src.value == int_attr(node, "to", -1)


def _reshape(node: ir.Node) -> bool:
    """Same shape in and out: every static dim equal and at most one dynamic dim, kept by 0 or -1."""
    shape = node.inputs[0].shape
    target = const_array(node.inputs[1]) if len(node.inputs) > 1 else None
    if shape is None or target is None or target.ndim != 1 or len(target) != len(shape):
        return False
    allowzero = int_attr(node, "allowzero", 0)
    dynamic = 0
    for i, (d, t) in enumerate(zip(shape.dims, target.tolist())):
        if t == 0 and not allowzero:
            continue  # copies input dim i
        if isinstance(d, int) and d == t:
            continue
        if t == -1 and not isinstance(d, int):
            dynamic += 1
            continue
        if t == -1 and isinstance(d, int):
            dynamic += 1  # -1 resolves to d when all other dims match
            continue
        return False
    return dynamic <= 1


_CHECKS = {"Dropout": _dropout, "Cast": _cast, "Reshape": _reshape}
