"""2:4 pruning of an ONNX model: select layers, optionally permute input channels, prune, report."""
from __future__ import annotations

import dataclasses
import time
from typing import Any, Sequence

import numpy as np
import onnx

from ..select import Patterns
from .channels import apply_channel_permutation, find_channel_path
from .graph import Constants, graph_nodes, layer_name, load, save, tensor_shapes
from .layers import SPEEDUP_CHANNELS, LayerView, trt_ineligibility, view_layer
from .masks import as_rows, mask_2to4, retained_magnitude, zero_fraction
from .permute import search_permutation

__all__ = ["PruneOptions", "sparsify_onnx", "select_layers"]


@dataclasses.dataclass(frozen=True)
class PruneOptions:
    permute: bool = False
    include: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()
    op_types: tuple[str, ...] = ("Conv", "ConvTranspose", "Gemm", "MatMul")
    min_channels: int = 16
    seed: int = 0
    permute_rounds: int = 20


def _matches(view: LayerView, patterns: Sequence[str]) -> bool:
    return Patterns(tuple(patterns)).match((view.name, view.node.op_type, view.node.outputs[0].name, view.weight.name)) is not None


def select_layers(consts: Constants, opts: PruneOptions) -> tuple[list[LayerView], list[dict[str, Any]]]:
    """The layers to prune, and the weighted layers left dense with the reason."""
    chosen: list[LayerView] = []
    skipped: list[dict[str, Any]] = []
    seen_weights: set[Any] = set()  # the ir.Values already pruned
    for node, _ in graph_nodes(consts.model.graph):
        if node.op_type not in opts.op_types:
            continue
        view = view_layer(consts, node)
        if view is None:
            continue
        name = layer_name(node)
        if isinstance(view, str):
            skipped.append({"layer": name, "op": node.op_type, "reason": view})
            continue

        def skip(reason: str) -> None:
            skipped.append({"layer": name, "op": node.op_type, "shape": list(view.shape), "reason": reason})

        if opts.include and not _matches(view, opts.include):
            skip("not matched by include patterns")
        elif opts.exclude and _matches(view, opts.exclude):
            skip("matched by an exclude pattern")
        elif view.weight.kind == "shared":
            skip("weight is shared (a codebook decoded by Gather): prune before share, which keeps the zeros")
        elif (why := trt_ineligibility(view)) is not None:
            skip(why)
        elif view.in_channels < opts.min_channels or view.out_channels < opts.min_channels:
            skip(
                f"{view.in_channels} input / {view.out_channels} output channels, fewer than min_channels="
                f"{opts.min_channels} (dense kernels win and pruning costs accuracy)"
            )
        elif view.weight.stored in seen_weights:
            skip(f"shares weight {view.weight.name!r} with a layer already pruned")
        else:
            seen_weights.add(view.weight.stored)
            chosen.append(view)
    return chosen, skipped


def _fresh(consts: Constants, view: LayerView) -> LayerView:
    v = view_layer(consts, view.node)
    assert isinstance(v, LayerView)
    return v


def _start_rank(view: LayerView, shapes: dict) -> int | None:
    if view.node.op_type in ("Conv", "ConvTranspose"):
        return view.weight.values.ndim
    if view.node.op_type == "Gemm":
        return 2
    s = shapes.get(view.node.inputs[view.data_index].name)
    return len(s) if s is not None else None


def sparsify_onnx(model: onnx.ModelProto, opts: PruneOptions, apply_masks: bool = True) -> tuple[onnx.ModelProto, dict[str, Any]]:
    """Prune a copy of ``model`` to 2:4; returns it with a JSON-serialisable report.

    ``apply_masks=False`` stops after the permutation: the model then computes the same function
    as the input (a check that every permutation reached its producer).
    """
    consts = Constants(load(model))  # its tensors are read from ``model``, never written into it
    layers, skipped = select_layers(consts, opts)
    shapes = tensor_shapes(model) if opts.permute else {}
    rows: dict[str, dict[str, Any]] = {}
    t0 = time.perf_counter()

    for view in layers:
        eff = view.weight.effective()
        dense_mask = mask_2to4(eff, view.reduction_axis)
        rows[view.name] = {
            "layer": view.name,
            "op": view.node.op_type,
            "weight": view.weight.name,
            "shape": list(view.shape),
            "params": int(eff.size),
            "quantized": view.weight.quantized,
            "in_channels": view.in_channels,
            "out_channels": view.out_channels,
            "zeros_before": zero_fraction(eff),
            "retained_magnitude": retained_magnitude(eff, dense_mask),
            "speedup_likely": bool(view.in_channels * view.kernel_size >= SPEEDUP_CHANNELS and view.out_channels >= SPEEDUP_CHANNELS),
        }

    permuted = 0
    if opts.permute:
        for k, view in enumerate(layers):
            row = rows[view.name]
            view = _fresh(consts, view)
            if view.weight.kind != "float":
                row["permutation"] = "not tried: quantized weights"
                continue
            if view.data_channel_axis is None:
                row["permutation"] = f"not tried: {view.note}"
                continue
            path = find_channel_path(
                consts, view.node, view.data_index, view.data_channel_axis, _start_rank(view, shapes), shapes, view.in_channels
            )
            if isinstance(path, str):
                row["permutation"] = f"not applied: {path}"
                continue
            w = view.weight.values
            res = search_permutation(np.abs(as_rows(w, view.reduction_axis)), max_rounds=opts.permute_rounds, seed=opts.seed + k)
            row["retained_magnitude_permuted"] = res.kept_after / res.total if res.total else 1.0
            if not res.improved:
                row["permutation"] = "not applied: no gain found"
                continue
            consts.set_input(view.node, view.weight_index, np.take(w, res.perm, axis=view.reduction_axis), suffix="perm")
            apply_channel_permutation(consts, path, res.perm)
            row["permutation"] = "applied through " + " <- ".join(path.nodes)
            permuted += 1
    t_perm = time.perf_counter() - t0

    for view in layers if apply_masks else []:
        row = rows[view.name]
        view = _fresh(consts, view)
        ws = view.weight
        mask = mask_2to4(ws.effective(), view.reduction_axis)
        zero = ws.stored_zero()
        new = np.where(mask, ws.values, np.broadcast_to(np.asarray(zero, dtype=ws.values.dtype), ws.values.shape))
        consts.set_input(ws.owner, ws.owner_index, new.astype(ws.values.dtype, copy=False), suffix="sparse")
        after = _fresh(consts, view).weight.effective()
        row["zeros_after"] = zero_fraction(after)
        row.setdefault("retained_magnitude_permuted", row["retained_magnitude"])

    for row in rows.values():
        row.setdefault("zeros_after", row["zeros_before"])
        row.setdefault("retained_magnitude_permuted", row["retained_magnitude"])
    report = _summary(list(rows.values()), skipped, permuted, opts)
    report["seconds_permutation_search"] = round(t_perm, 3)
    return save(consts.model, model), report


def _summary(rows: list[dict], skipped: list[dict], permuted: int, opts: PruneOptions) -> dict[str, Any]:
    """Totals over layers. Retained magnitude is given as the mean over layers and weighted by
    parameter count (layers' weight scales differ, so neither alone tells the whole story)."""
    pruned_params = sum(r["params"] for r in rows)
    zeros_added = sum(round(r["params"] * (r["zeros_after"] - r["zeros_before"])) for r in rows)
    dense_params = sum(int(np.prod(s["shape"])) for s in skipped if "shape" in s)
    weight = pruned_params or 1
    return {
        "layers_pruned": len(rows),
        "layers_dense": len(skipped),
        "layers_permuted": permuted,
        "params_in_pruned_layers": pruned_params,
        "params_in_dense_layers": dense_params,
        "zeros_added": zeros_added,
        "pruning_rate": zeros_added / max(1, pruned_params + dense_params),
        "pruning_rate_of_pruned_layers": zeros_added / max(1, pruned_params),
        "mean_retained_magnitude": float(np.mean([r["retained_magnitude"] for r in rows])) if rows else 1.0,
        "mean_retained_magnitude_permuted": float(np.mean([r["retained_magnitude_permuted"] for r in rows])) if rows else 1.0,
        "weighted_retained_magnitude": sum(r["retained_magnitude"] * r["params"] for r in rows) / weight,
        "weighted_retained_magnitude_permuted": sum(r["retained_magnitude_permuted"] * r["params"] for r in rows) / weight,
        "options": dataclasses.asdict(opts),
        "layers": rows,
        "skipped": skipped,
    }
