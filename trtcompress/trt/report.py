"""What the engine really does: per-layer precision and tactic, 2:4 layers, unused precisions.

Two sources, both parsed by pure functions:

- the engine inspector's JSON (``IEngineInspector.get_engine_information(LayerInformationFormat.JSON)``,
  complete only for engines built with ``ProfilingVerbosity.DETAILED``, Polygraphy's default):
  ``{"Layers": [{"Name", "LayerType", "Inputs": [{"Name", "Format/Datatype", ...}], "Outputs": [...],
  "TacticName", "TacticValue", ...}], "Bindings": [...]}``; a layer's precision is read from its
  tensors' "Format/Datatype" (e.g. "Row major linear FP32", "Channel major FP16 format where
  channel % 2 == 0", "Thirty-two wide channel vectorized row major Int8 format");
- TensorRT's builder log, which ends with (TensorRT developer guide, "Structured Sparsity")::

      [I] [TRT] (Sparsity) Layers eligible for sparse math: conv1, conv2, conv3
      [I] [TRT] (Sparsity) TRT inference plan picked sparse implementation for layers: conv2, conv3
"""
from __future__ import annotations

import json
import re
from typing import Any, Iterable

__all__ = ["parse_inspector", "layer_precision", "parse_sparsity_log", "precision_warnings", "engine_report"]

_ELIGIBLE = re.compile(r"\(Sparsity\) Layers eligible for sparse math:\s*(.*)$")
_PICKED = re.compile(r"\(Sparsity\) TRT inference plan picked sparse implementation for layers:\s*(.*)$")
# most specific first: "FP16" must not match inside another name, "Int8" before "Int32"
_PRECISIONS = (("fp8", r"\bfp8\b"), ("int4", r"\bint4\b"), ("int8", r"\bint8\b"), ("bf16", r"\b(bf16|bfloat16)\b"), ("fp16", r"\b(fp16|half)\b"), ("fp32", r"\b(fp32|float)\b"), ("int32", r"\bint32\b"), ("int64", r"\bint64\b"), ("bool", r"\bbool\b"))
_NO_MATH = {"Reformat", "Shuffle", "Constant", "NoOp", "Identity", "Slice", "Concatenation", "Gather", "Shape"}


def layer_precision(layer: dict[str, Any]) -> str | None:
    """The precision a layer computes in: the lowest float/int precision among its input
    tensors (a Conv reading Int8 and writing FP32 runs INT8), else its outputs'."""
    order = [p for p, _ in _PRECISIONS]
    for side in ("Inputs", "Outputs"):
        found = []
        for t in layer.get(side) or []:
            text = str(t.get("Format/Datatype", "")) if isinstance(t, dict) else str(t)
            for name, pattern in _PRECISIONS:
                if re.search(pattern, text, re.IGNORECASE):
                    found.append(name)
                    break
        floats = [p for p in found if p in ("fp8", "int4", "int8", "bf16", "fp16", "fp32")]
        if floats:
            return min(floats, key=order.index)
    return None


def parse_inspector(text_or_obj: str | dict[str, Any]) -> list[dict[str, Any]]:
    """One row per engine layer: name, type, precision, tactic."""
    data = json.loads(text_or_obj) if isinstance(text_or_obj, str) else text_or_obj
    rows = []
    for layer in data.get("Layers", []):
        if isinstance(layer, str):  # verbosity below DETAILED gives names only
            rows.append({"name": layer, "type": None, "precision": None, "tactic": None})
            continue
        rows.append({
            "name": layer.get("Name"),
            "type": layer.get("LayerType"),
            "precision": layer_precision(layer),
            "tactic": layer.get("TacticName") or layer.get("TacticValue"),
        })
    return rows


def _names(text: str) -> list[str]:
    return [n.strip() for n in text.split(",") if n.strip()]


def parse_sparsity_log(lines: Iterable[str]) -> dict[str, list[str]]:
    """``{"eligible": [...], "picked": [...]}`` from TensorRT's builder log (the last report wins)."""
    out: dict[str, list[str]] = {"eligible": [], "picked": []}
    for line in lines:
        line = line.rstrip()
        m = _ELIGIBLE.search(line)
        if m:
            out["eligible"] = _names(m.group(1))
        m = _PICKED.search(line)
        if m:
            out["picked"] = _names(m.group(1))
    return out


def precision_warnings(requested: Iterable[str], layers: list[dict[str, Any]], sparse_requested: bool = False, sparsity: dict[str, list[str]] | None = None) -> list[str]:
    """Loud lines for a requested precision no layer uses (the silent-FP32 engine) and for a
    2:4 build where TensorRT picked no sparse kernel."""
    used = {l["precision"] for l in layers if l.get("type") not in _NO_MATH}
    warnings = []
    if layers and all(l["precision"] is None for l in layers):
        warnings.append("the engine inspector gave no layer precisions (engine not built with profiling verbosity DETAILED?): precisions are unchecked")
        return warnings
    for p in requested:
        if p != "fp32" and p not in used:
            warnings.append(f"{p.upper()} was requested but NO layer of the engine runs in {p.upper()}: TensorRT found no faster {p.upper()} kernel or the model does not carry that precision (check its Q/DQ placement / types)")
    if sparse_requested and sparsity is not None:
        if not sparsity["eligible"]:
            warnings.append("SPARSE_WEIGHTS was set but TensorRT found no layer eligible for sparse math")
        elif not sparsity["picked"]:
            warnings.append(f"{len(sparsity['eligible'])} layer(s) were eligible for 2:4 sparse math but TensorRT picked dense kernels for all (sparse was slower at these sizes)")
    return warnings


def engine_report(inspector_json: str | dict[str, Any] | None, log_lines: Iterable[str], requested: Iterable[str], sparse_requested: bool) -> dict[str, Any]:
    layers = parse_inspector(inspector_json) if inspector_json else []
    sparsity = parse_sparsity_log(log_lines)
    counts: dict[str, int] = {}
    for l in layers:
        counts[str(l["precision"])] = counts.get(str(l["precision"]), 0) + 1
    return {
        "layers": layers,
        "precision_counts": counts,
        "sparsity": sparsity,
        "warnings": precision_warnings(requested, layers, sparse_requested, sparsity) if layers else [],
    }
