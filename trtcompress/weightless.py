"""Work on an in-memory model over the protobuf limit through a weightless copy.

Protobuf cannot serialise a message of 2 GB or more, and ONNX Runtime sessions, shape inference
and the checker all serialise the model they are given. None of them needs the bytes of the large
weights: shape inference and the checker read only their dims, and ONNX Runtime takes them as
arrays beside the graph (``SessionOptions.add_external_initializers``). So a large model is
handed to them as a copy whose large initialisers are marked external, with no data.
"""
from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np
import onnx
from onnx import numpy_helper

__all__ = ["is_large", "model_nbytes", "has_external_data", "detach_weights", "attach_weights", "ort_session", "check_weightless", "infer_weightless", "add_outputs", "LARGE_MODEL_BYTES", "DETACH_BYTES"]

# Models whose weights total more than this go through the weightless copy (the margin leaves
# room for the graph itself under protobuf's 2**31 - 1 bytes).
LARGE_MODEL_BYTES = 2**31 - 1 - (64 << 20)
# Initialisers at least this big leave the weightless copy; small ones (shapes, scales) stay, as
# shape inference reads their values.
DETACH_BYTES = 1 << 20
_LOCATION = "weights.bin"  # where the placeholders say their data is; never read


def is_large(model: onnx.ModelProto) -> bool:
    return model_nbytes(model) > LARGE_MODEL_BYTES


def has_external_data(model: onnx.ModelProto) -> bool:
    """Whether some tensor's data is still in an external file (loaded with load_external_data=False)."""
    return any(t.data_location == onnx.TensorProto.EXTERNAL for t in onnx.external_data_helper._get_all_tensors(model))


def model_nbytes(model: onnx.ModelProto) -> int:
    """Bytes of tensor data (in memory or on disk), from dims and external-data lengths: reading
    ``raw_data`` would copy it."""
    total = 0
    for t in onnx.external_data_helper._get_all_tensors(model):
        if t.data_location == onnx.TensorProto.EXTERNAL:
            total += int({e.key: e.value for e in t.external_data}.get("length", 0))
        else:
            total += _tensor_nbytes(t)
    return total


def _tensor_nbytes(t: onnx.TensorProto) -> int:
    n = int(np.prod(t.dims)) if t.dims else 1
    try:
        return n * onnx.helper.tensor_dtype_to_np_dtype(t.data_type).itemsize
    except (KeyError, ValueError):
        return n  # an undefined element type: the checker names it; the size only has to be about right


def _copy_fields(src, dst, skip: str) -> None:
    """``dst.CopyFrom(src)`` without the field ``skip`` (which may hold gigabytes)."""
    for field, value in src.ListFields():
        if field.name == skip:
            continue
        if hasattr(value, "extend"):  # repeated
            getattr(dst, field.name).extend(value)
        elif hasattr(value, "CopyFrom"):
            getattr(dst, field.name).CopyFrom(value)
        else:
            setattr(dst, field.name, value)


def detach_weights(model: onnx.ModelProto) -> tuple[onnx.ModelProto, list[str]]:
    """A copy of ``model`` whose main-graph initialisers of at least :data:`DETACH_BYTES` (held
    in memory) are external placeholders, and their names."""
    light = onnx.ModelProto()
    _copy_fields(model, light, "graph")
    _copy_fields(model.graph, light.graph, "initializer")
    names, offset = [], 0
    for t in model.graph.initializer:
        nbytes = _tensor_nbytes(t)
        if t.data_location == onnx.TensorProto.EXTERNAL or nbytes < DETACH_BYTES:
            light.graph.initializer.add().CopyFrom(t)
            continue
        p = light.graph.initializer.add(name=t.name, data_type=t.data_type, dims=t.dims, data_location=onnx.TensorProto.EXTERNAL)
        for key, value in (("location", _LOCATION), ("offset", str(offset)), ("length", str(nbytes))):
            p.external_data.add(key=key, value=value)
        names.append(t.name)
        offset += nbytes
    return light, names


def attach_weights(light: onnx.ModelProto, model: onnx.ModelProto, names: Sequence[str]) -> onnx.ModelProto:
    """``light`` (a weightless copy, possibly changed) with the placeholders ``names`` given
    ``model``'s initialisers back."""
    detached = set(names)
    source = {t.name: t for t in model.graph.initializer if t.name in detached}
    out = onnx.ModelProto()
    _copy_fields(light, out, "graph")
    _copy_fields(light.graph, out.graph, "initializer")
    for t in light.graph.initializer:
        out.graph.initializer.add().CopyFrom(source[t.name] if t.name in detached else t)
    return out


def _array(t: onnx.TensorProto) -> np.ndarray:
    if t.HasField("raw_data"):
        return np.frombuffer(t.raw_data, dtype=onnx.helper.tensor_dtype_to_np_dtype(t.data_type)).reshape(tuple(t.dims))
    return numpy_helper.to_array(t)


def ort_session(model: onnx.ModelProto, options: Any = None, providers: Sequence[str] = ("CPUExecutionProvider",), outputs: Sequence[str] = ()):
    """An ONNX Runtime session on ``model`` held in memory, whatever its size, with the graph
    tensors ``outputs`` as extra outputs (``model`` itself is not changed)."""
    import onnxruntime as ort

    so = options if options is not None else ort.SessionOptions()
    if not is_large(model):
        if outputs:
            copy = onnx.ModelProto()
            copy.CopyFrom(model)
            model = add_outputs(copy, outputs)
        return ort.InferenceSession(model.SerializeToString(), so, providers=list(providers))
    light, names = detach_weights(model)
    add_outputs(light, outputs)
    by_name = {t.name: t for t in model.graph.initializer}
    values = [ort.OrtValue.ortvalue_from_numpy(_array(by_name[n])) for n in names]
    so.add_external_initializers(names, values)
    # prepacking copies each weight into the GEMM's layout when the session starts: 17 s of a 2 GB
    # MatMul's 18 s, for the few batches these sessions run
    so.add_session_config_entry("session.disable_prepacking", "1")
    sess = ort.InferenceSession(light.SerializeToString(), so, providers=list(providers))
    # ONNX Runtime 1.32 reads a page-aligned buffer in place (and copies others): keep them alive with the session
    sess._trtcompress_weights = values
    return sess


def add_outputs(model: onnx.ModelProto, names: Iterable[str]) -> onnx.ModelProto:
    """``model``, changed in place, with the graph tensors ``names`` among its outputs."""
    have = {o.name for o in model.graph.output}
    for n in names:
        if n not in have:
            model.graph.output.append(onnx.ValueInfoProto(name=n))
            have.add(n)
    return model


def infer_weightless(model: onnx.ModelProto) -> onnx.ModelProto:
    """ONNX shape inference (with data propagation) on the weightless copy, weights put back."""
    light, names = detach_weights(model)
    return attach_weights(onnx.shape_inference.infer_shapes(light, data_prop=True), model, names)


def check_weightless(model: onnx.ModelProto) -> None:
    """The ONNX checker on a large in-memory model: the weightless copy, saved with a sparse file
    of the placeholders' total size where they say their data is (the checker wants it there)."""
    light, names = detach_weights(model)
    tmp = Path(tempfile.mkdtemp(prefix=".trtcompress-check-"))
    try:
        onnx.save_model(light, str(tmp / "model.onnx"))
        detached = set(names)
        total = sum(_tensor_nbytes(t) for t in light.graph.initializer if t.name in detached)
        with open(tmp / _LOCATION, "wb") as f:
            f.truncate(total)  # sparse: no disk used
        onnx.checker.check_model(str(tmp / "model.onnx"))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
