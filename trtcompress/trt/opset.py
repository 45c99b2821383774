"""Fit an ONNX model to the opsets a TensorRT version's parser imports.

TensorRT 8.6's parser stops at opset 17 and its ReduceMean importer ignores axes given as an input
(the opset 18 form), reducing over every axis: a model at a newer opset is converted down with
``onnx.version_converter`` (which turns ReduceMean's constant axes input back into the attribute;
checked in the tests by running both forms in ONNX Runtime; the ``noop_with_empty_axes=0`` torch
spells out is dropped first, the converter rejects it), or refused with a one-line message when the
converter cannot express the model at the older opset.
"""
from __future__ import annotations

import dataclasses

import onnx

from ..errors import ModelError
from .version import TrtVersion, parse_version

__all__ = ["OpsetFit", "default_opset", "export_opset", "fit_opset", "convert_down"]

_DEFAULT_DOMAINS = ("", "ai.onnx")


@dataclasses.dataclass(frozen=True)
class OpsetFit:
    model: onnx.ModelProto
    opset_before: int
    opset_after: int

    @property
    def converted(self) -> bool:
        return self.opset_after != self.opset_before

    def note(self, version: TrtVersion) -> str:
        if not self.converted:
            return f"opset {self.opset_before} is within TensorRT {version}'s parser (up to {version.max_onnx_opset})"
        return f"converted from opset {self.opset_before} to {self.opset_after} for TensorRT {version} (its parser imports up to {version.max_onnx_opset})"


def default_opset(model: onnx.ModelProto) -> int:
    return next((o.version for o in model.opset_import if o.domain in _DEFAULT_DOMAINS), 0)


def export_opset(opset: int | None, default: int, version: str | TrtVersion) -> int:
    """The opset to export at for ``version``: ``default`` capped at what its parser reads, or the
    user's ``opset``, refused when that is newer than the parser reads."""
    from ..errors import ConfigError

    version = parse_version(version)
    top = version.max_onnx_opset
    if opset and opset > top:
        raise ConfigError(f"--opset {opset} is newer than TensorRT {version.major}.{version.minor} parses (up to {top}); drop --opset or give one <= {top}")
    return opset or min(default, top)


def fit_opset(model: onnx.ModelProto, version: str | TrtVersion) -> OpsetFit:
    """``model`` itself when its opset is within ``version``'s parser, else a converted copy."""
    version = parse_version(version)
    before = default_opset(model)
    target = version.max_onnx_opset
    if before <= target:
        return OpsetFit(model, before, before)
    converted = convert_down(model, target, f"for TensorRT {version}", f"target a newer TensorRT")
    return OpsetFit(converted, before, default_opset(converted))


def convert_down(model: onnx.ModelProto, opset: int, purpose: str = "", alternative: str = "") -> onnx.ModelProto:
    """``model`` converted to default-domain ``opset`` (older than its own), or a one-line ModelError."""
    from onnx import version_converter

    before = default_opset(model)
    model = _without_default_noop(model)
    try:
        converted = version_converter.convert_version(model, opset)
        onnx.checker.check_model(converted)
    except Exception as e:  # the converter raises RuntimeError / ValidationError / its own C++ errors
        first = (str(e).strip().splitlines() or [type(e).__name__])[0]
        what = f" {purpose}" if purpose else ""
        other = f" or {alternative}" if alternative else ""
        raise ModelError(
            f"the model is at opset {before} and cannot be converted to opset {opset}{what} ({first}); "
            f"re-export it at opset {opset} (trtcompress export --opset {opset}){other}"
        ) from e
    return converted


def _without_default_noop(model: onnx.ModelProto) -> onnx.ModelProto:
    """A copy without ``noop_with_empty_axes=0`` on reductions (the default, spelt out by torch's
    exporter): onnx's converter rejects the attribute when it moves ReduceMean's axes back from the
    input to the attribute ("Unrecognized attribute: noop_with_empty_axes")."""
    def has(n: onnx.NodeProto) -> bool:
        return n.op_type.startswith("Reduce") and any(a.name == "noop_with_empty_axes" and a.i == 0 for a in n.attribute)

    if not any(has(n) for n in model.graph.node):
        return model
    out = onnx.ModelProto()
    out.CopyFrom(model)
    for n in out.graph.node:
        if has(n):
            keep = [a for a in n.attribute if a.name != "noop_with_empty_axes"]
            del n.attribute[:]
            n.attribute.extend(keep)
    return out
