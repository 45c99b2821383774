"""The weights a refittable engine holds, by name, computed without TensorRT.

Which ONNX a stripped engine is built from: the **decoded dense form**. TensorRT's ONNX parser
names each engine weight after its ONNX initializer (``INetworkDefinition::setWeightsName``,
TensorRT's "Refitting an Engine" guide, 10.x), and the parser's refitter refits only from "the
ONNX model ... identical to the one used to generate the engine" (include/NvOnnxParser.h,
``IParserRefitter``, TensorRT 11.1 OSS). The share stage's form keeps uint8 indices behind
``Gather(codebook, Cast(indices))``; the parser turns uint8 initializers into int32 proxies and
allows uint8 only at the network's inputs and outputs (onnx-tensorrt 10.1: WeightsContext.cpp
``convertUINT8``, ModelImporter.cpp), so what refit would address in that form is the codebook and
the int32 copy of the indices feeding a constant-folded Gather: behaviour the refit documentation
does not describe. The decoded form has one plain float initializer per weight, the case every
TensorRT refit path documents, and the decode is exact (``share/decode.py`` folds the same float32
arithmetic a runtime folds at load time), so the engine and the refit see the same weights.

``engine_weights_model`` is the one function both ``build`` and ``refit`` use to get that form,
so they cannot disagree; the build records :func:`weights_digest` in the sidecar and refit compares
it before TensorRT is touched.
"""
from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import numpy_helper

from ..errors import ModelError

__all__ = ["engine_weights_model", "weight_map", "weights_digest", "weight_shapes", "describe_mismatch", "weights_record", "refit_record", "read_weights_source", "is_artifact"]


def engine_weights_model(model: onnx.ModelProto, convert_fp16: bool = False) -> onnx.ModelProto:
    """The ONNX a refittable engine is parsed from: shared weights decoded to plain initializers,
    then converted to float16 when the build converts (strongly typed ``--fp16``)."""
    from ..share.decode import decode_shared

    dense, _ = decode_shared(model)
    if convert_fp16:
        from .fp16 import convert_to_fp16

        dense = convert_to_fp16(dense).model
    return dense


def weight_map(model: onnx.ModelProto) -> dict[str, np.ndarray]:
    """Every constant of the main graph by the name the ONNX parser gives it: initializers and
    ``Constant`` node values (the parser refitter handles both, ModelRefitter.cpp)."""
    out = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    for node in model.graph.node:
        if node.op_type == "Constant" and node.domain in ("", "ai.onnx"):
            for a in node.attribute:
                if a.name == "value":
                    out[node.output[0]] = numpy_helper.to_array(a.t)
    return out


def weights_digest(weights: dict[str, np.ndarray]) -> dict[str, Any]:
    """SHA-256 of the names, dtypes and shapes (``structure``: what any refit needs to match) and
    of those plus the bytes (``values``: what a REFIT_IDENTICAL engine needs to match)."""
    structure, values = hashlib.sha256(), hashlib.sha256()
    total = 0
    for name in sorted(weights):
        a = np.ascontiguousarray(weights[name])
        key = f"{name}\0{a.dtype.str}\0{'x'.join(map(str, a.shape))}\n".encode()
        structure.update(key)
        values.update(key)
        values.update(a.tobytes())
        total += a.nbytes
    return {"structure": structure.hexdigest(), "values": values.hexdigest(), "count": len(weights), "bytes": total}


def weight_shapes(weights: dict[str, np.ndarray]) -> dict[str, str]:
    """``name -> "float32 32x1x4x4"``: kept in the sidecar so a mismatch can name the weights."""
    return {n: f"{a.dtype.name} {'x'.join(map(str, a.shape)) or 'scalar'}" for n, a in sorted(weights.items())}


def describe_mismatch(built: dict[str, str], given: dict[str, str], limit: int = 4) -> str:
    """The first few weights missing, unexpected or of another dtype/shape, for a one-line error."""
    parts = []
    for label, names in (("missing", [n for n in built if n not in given]), ("not in the engine", [n for n in given if n not in built]),
                         ("other dtype/shape", [f"{n} ({given[n]}, engine {built[n]})" for n in built if n in given and given[n] != built[n]])):
        if names:
            parts.append(f"{label}: {', '.join(names[:limit])}{f' and {len(names) - limit} more' if len(names) > limit else ''}")
    return "; ".join(parts)


def weights_record(dense: onnx.ModelProto) -> dict[str, Any]:
    """What a refit is checked against, for ``dense`` (:func:`engine_weights_model`'s form): the
    weights' digest and each weight's dtype and shape."""
    weights = weight_map(dense)
    return {"weights": weights_digest(weights), "shapes": weight_shapes(weights)}


def refit_record(dense: onnx.ModelProto, refit: str, strip_weights: bool, convert_fp16: bool) -> dict[str, Any]:
    """The sidecar's ``refit`` entry for a build that parsed ``dense``."""
    return {"mode": refit, "stripped": strip_weights, "form": "decoded dense" + (" float16" if convert_fp16 else ""), **weights_record(dense)}


def is_artifact(path: str | os.PathLike) -> bool:
    """A ``trtcompress pack`` artifact (a zip) rather than an ONNX file (protobuf never starts with PK)."""
    with open(path, "rb") as f:
        return f.read(4) == b"PK\x03\x04"


def read_weights_source(path: str | os.PathLike) -> tuple[onnx.ModelProto, str]:
    """The model in a packed artifact (checksums verified) or an ONNX file, and which it was."""
    from ..model_io import load_model, require_model_file

    p = Path(path)
    if p.is_file() and is_artifact(p):
        from ..share.pack import unpack_bytes

        data = unpack_bytes(p.read_bytes(), where=str(p))
        try:
            return onnx.load_model_from_string(data), "artifact"
        except Exception as e:  # protobuf's DecodeError: checksums passed, so it was packed from a non-ONNX file
            raise ModelError(f"{p} unpacks to something that is not an ONNX model ({type(e).__name__}); pack the ONNX the engine was built from") from None
    return load_model(require_model_file(p), check=False), "onnx"
