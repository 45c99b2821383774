"""Normalisation: the rewrites every stage relies on, as one onnx-ir pass pipeline, reported.

Order matters: Constant nodes become initializers and shapes are inferred, so constant folding
sees the static dimensions; no-ops go next (a Cast or Reshape between a Conv and its
BatchNormalization would hide the pair); then BatchNormalization and Pad folds; then duplicate
initializers are shared and whatever became dead is removed.

Weights stay lazy (onnx-ir keeps external tensors unread): a pass reads a tensor only to fold
it, and deduplication compares only tensors up to ``DEDUP_LIMIT`` elements.
"""
from __future__ import annotations

import collections
import time
from typing import Any, Callable

import onnx
import onnx_ir as ir
from onnx_ir.passes import common as common_passes

from .fold_batchnorm import FoldBatchNormPass
from .fold_constants import FoldConstantsPass
from .fold_pad import FoldPadPass
from .remove_noops import RemoveNoOpsPass

__all__ = ["REWRITES", "normalize", "cleanup", "DEDUP_LIMIT"]

DEDUP_LIMIT = 1 << 20  # elements; larger tensors are not read to look for duplicates


class _IdentityElimination(common_passes.IdentityEliminationPass):
    """onnx-ir's pass, except for an Identity that hands a value of another graph (an If branch
    returning an outer tensor) out as its own graph's output: onnx-ir would make one value the
    output of two graphs and fail (silero-vad's op15 export has such branches)."""

    def _try_eliminate_identity_node(self, node: ir.Node) -> bool:
        if node.op_type == "Identity" and node.inputs and node.inputs[0] is not None and node.outputs[0].is_graph_output():
            x = node.inputs[0]
            home = x.producer().graph if x.producer() is not None else x.graph
            if home is not node.graph or x.is_graph_output():
                return False
        return super()._try_eliminate_identity_node(node)


# rewrite name (a switch of NormalizeConfig) -> factory of (pass, how to read what it did or None)
REWRITES: dict[str, Callable[[], list[tuple[ir.passes.PassBase, Callable[[Any], Any] | None]]]] = {
    "fold_constants": lambda: [
        (common_passes.ShapeInferencePass(strict_mode=False), None),
        (FoldConstantsPass(), lambda p: {"nodes": p.folded, "shapes": p.shapes}),
    ],
    "remove_noops": lambda: [
        (RemoveNoOpsPass(), lambda p: dict(p.removed)),
        (_IdentityElimination(), None),
    ],
    "fold_batchnorm": lambda: [(FoldBatchNormPass(), lambda p: dict(p.folded))],
    "fold_pad": lambda: [(FoldPadPass(), lambda p: dict(p.folded))],
    "dedup_initializers": lambda: [(common_passes.DeduplicateInitializersPass(size_limit=DEDUP_LIMIT), None)],
    "remove_dead": lambda: [(common_passes.RemoveUnusedNodesPass(), None)],
}


def normalize(model: onnx.ModelProto, switches: dict[str, bool], min_opset: int = 0) -> tuple[onnx.ModelProto, dict[str, Any]]:
    """Run the enabled rewrites, in :data:`REWRITES` order; return the model and the report.

    ``min_opset``: first convert a model on an older default-domain opset to this one (per-channel
    Q/DQ needs 13); the report says from which.
    """
    t0 = time.perf_counter()
    before = {"nodes": len(model.graph.node), "initializers": len(model.graph.initializer), "ops": collections.Counter(n.op_type for n in model.graph.node)}
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)
    upgraded = None
    if opset and opset < min_opset:
        model, upgraded = _upgrade(model, min_opset), {"from": opset, "to": min_opset}
    graph_ir = ir.from_proto(model)
    rewrites: dict[str, Any] = {}
    for name, make in REWRITES.items():
        if not switches.get(name, True):
            continue
        n0, i0 = len(graph_ir.graph), len(graph_ir.graph.initializers)
        counts: dict[str, Any] = {}
        for p, count in make():
            p(graph_ir)
            if count is not None:
                counts.update(count(p))
        entry = {"nodes_removed": n0 - len(graph_ir.graph), "initializers_change": len(graph_ir.graph.initializers) - i0}
        entry.update({k: v for k, v in counts.items() if v})
        rewrites[name] = entry
    after = _census(graph_ir)
    report = {
        "nodes_before": before["nodes"], "nodes_after": after["nodes"],
        "initializers_before": before["initializers"], "initializers_after": after["initializers"],
        "rewrites": rewrites,
        "ops_removed": {op: n - after["ops"].get(op, 0) for op, n in before["ops"].items() if n > after["ops"].get(op, 0)},
        "seconds": round(time.perf_counter() - t0, 3),
    }
    if upgraded:
        report["opset"] = upgraded
    return ir.to_proto(graph_ir), report


def cleanup(model: onnx.ModelProto) -> tuple[onnx.ModelProto, dict[str, int]]:
    """After the last stage: remove dead nodes and initializers (none ships), and the shape
    annotations of intermediate tensors that normalisation's shape inference added (runtimes infer
    them again; on a small model they made the shipped file larger than the original). When no
    node or initializer goes, ``model`` itself is returned with its value_info cleared in place."""
    m = ir.from_proto(model)
    n0, i0 = len(m.graph), len(m.graph.initializers)
    common_passes.RemoveUnusedNodesPass()(m)
    report = {"nodes_removed": n0 - len(m.graph), "initializers_removed": i0 - len(m.graph.initializers),
              "value_info_removed": len(model.graph.value_info)}
    if not any(report.values()):
        return model, report
    out = ir.to_proto(m) if report["nodes_removed"] or report["initializers_removed"] else model
    del out.graph.value_info[:]
    return out, report


def _upgrade(model: onnx.ModelProto, opset: int) -> onnx.ModelProto:
    from onnx import version_converter

    from ..errors import ModelError

    try:
        return version_converter.convert_version(model, opset)
    except Exception as e:
        msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ModelError(f"cannot convert the model to opset {opset} ({msg}); re-export it with opset_version={opset} or set normalize min_opset=0") from e


def _census(m: ir.Model) -> dict[str, Any]:
    return {"nodes": len(m.graph), "initializers": len(m.graph.initializers), "ops": collections.Counter(n.op_type for n in m.graph)}
