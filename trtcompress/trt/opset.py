"""Fit an ONNX model to the opsets a TensorRT version's parser imports.

TensorRT 8.6's parser stops at opset 17 and its ReduceMean importer ignores axes given as an input
(the opset 18 form), reducing over every axis: a model at a newer opset is converted down with
``onnx.version_converter`` (which turns ReduceMean's constant axes input back into the attribute;
checked in the tests by running both forms in ONNX Runtime), or refused with a one-line message
when the converter cannot express it at the older opset.
"""
from __future__ import annotations

import dataclasses

import onnx

from ..errors import ModelError
from .version import TrtVersion, parse_version

__all__ = ["OpsetFit", "default_opset", "fit_opset"]

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


def fit_opset(model: onnx.ModelProto, version: str | TrtVersion) -> OpsetFit:
    """``model`` itself when its opset is within ``version``'s parser, else a converted copy."""
    version = parse_version(version)
    before = default_opset(model)
    target = version.max_onnx_opset
    if before <= target:
        return OpsetFit(model, before, before)
    from onnx import version_converter

    try:
        converted = version_converter.convert_version(model, target)
        onnx.checker.check_model(converted)
    except Exception as e:  # the converter raises RuntimeError / ValidationError / its own C++ errors
        first = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise ModelError(
            f"the model is at opset {before} and cannot be converted to opset {target} for TensorRT {version} ({first}); "
            f"re-export it at opset {target} (trtcompress export --opset {target}) or target a newer TensorRT"
        ) from e
    return OpsetFit(converted, before, default_opset(converted))
