"""Work on an in-memory model over the protobuf limit through a weightless copy.

Protobuf cannot serialise a message of 2 GB or more, and ONNX Runtime sessions, shape inference
and the checker all serialise the model they are given. None of them needs the bytes of the large
weights: shape inference and the checker read only their dims, and ONNX Runtime is fed them as
graph inputs with every run. So a large model is handed to them as a copy whose large
initialisers are marked external, with no data.

A stage that works on a large model for long (quantize) *holds* its weights: one array per large
initialiser, kept beside a light copy of the model whose placeholders name the array
(:func:`held_weights`). Every session is fed those arrays, every reader gets them through
:func:`tensor_array`, and :func:`materialize` puts them back into the model the stage returns, so
the weights exist twice (the caller's model and the arrays) instead of once per copy and session.
"""
from __future__ import annotations

import contextlib
import shutil
import tempfile
import uuid
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np
import onnx
from onnx import numpy_helper

__all__ = ["is_large", "model_nbytes", "has_external_data", "detach_weights", "attach_weights", "fed_copy", "held_weights", "tensor_array", "materialize", "check_weightless", "infer_weightless", "add_outputs", "WeightFedSession", "LARGE_MODEL_BYTES", "DETACH_BYTES"]

# Models whose weights total more than this go through the weightless copy (the margin leaves
# room for the graph itself under protobuf's 2**31 - 1 bytes).
LARGE_MODEL_BYTES = 2**31 - 1 - (64 << 20)
# Initialisers at least this big leave the weightless copy; small ones (shapes, scales) stay, as
# shape inference reads their values.
DETACH_BYTES = 1 << 20
_LOCATION = "weights.bin"  # where the placeholders say their data is; never read
_HELD_PREFIX = "trtcompress-held:"  # a held placeholder's location: the key of its array in _HELD
_HELD: dict[str, np.ndarray] = {}


def is_large(model: onnx.ModelProto) -> bool:
    return model_nbytes(model) > LARGE_MODEL_BYTES


def has_external_data(model: onnx.ModelProto) -> bool:
    """Whether some tensor's data is still in an external file (loaded with load_external_data=False)."""
    return any(_on_disk(t) for t in onnx.external_data_helper._get_all_tensors(model))


def _on_disk(t: onnx.TensorProto) -> bool:
    return t.data_location == onnx.TensorProto.EXTERNAL and _held_key(t) is None


def _held_key(t: onnx.TensorProto) -> str | None:
    if t.data_location != onnx.TensorProto.EXTERNAL:
        return None
    location = next((e.value for e in t.external_data if e.key == "location"), "")
    return location[len(_HELD_PREFIX):] if location.startswith(_HELD_PREFIX) else None


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
        if _on_disk(t) or nbytes < DETACH_BYTES:
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


@contextlib.contextmanager
def held_weights(model: onnx.ModelProto):
    """A light copy of a large ``model`` whose weights of at least :data:`DETACH_BYTES` are held
    as arrays until the block ends; a model under the limit is given as it is."""
    if not is_large(model):
        yield model
        return
    light, names = detach_weights(model)
    token = uuid.uuid4().hex
    detached, keys = set(names), []
    arrays = {t.name: _array(t) for t in model.graph.initializer if t.name in detached}
    for t in light.graph.initializer:
        if t.name in detached:
            keys.append(f"{token}/{t.name}")
            _HELD[keys[-1]] = arrays.pop(t.name)
            next(e for e in t.external_data if e.key == "location").value = _HELD_PREFIX + keys[-1]
    try:
        yield light
    finally:
        for k in keys:
            _HELD.pop(k, None)


def tensor_array(t: onnx.TensorProto) -> np.ndarray:
    """The value of an in-memory or held tensor."""
    key = _held_key(t)
    return _HELD[key] if key is not None else numpy_helper.to_array(t)


def materialize(model: onnx.ModelProto) -> onnx.ModelProto:
    """``model``, changed in place, with its held placeholders given their data; each array is
    let go as it is copied in, so a weight is never in memory three times."""
    for t in model.graph.initializer:
        key = _held_key(t)
        if key is not None:
            data = _HELD.pop(key).tobytes()
            del t.external_data[:]
            t.ClearField("data_location")
            t.raw_data = data
            del data
    return model


def _array(t: onnx.TensorProto) -> np.ndarray:
    """:func:`tensor_array`, read-only and one copy fewer for in-memory ``raw_data``."""
    if _held_key(t) is not None or not t.HasField("raw_data"):
        return tensor_array(t)
    return np.frombuffer(t.raw_data, dtype=onnx.helper.tensor_dtype_to_np_dtype(t.data_type)).reshape(tuple(t.dims))


def fed_copy(model: onnx.ModelProto, outputs: Sequence[str] = ()) -> tuple[onnx.ModelProto, dict[str, np.ndarray]]:
    """What ONNX Runtime is given for ``model``, with the graph tensors ``outputs`` as extra
    outputs: under the limit, ``model`` (a copy when outputs are added) and no weights; over it,
    the weightless copy whose large weights are graph inputs, and those weights, to be fed with
    every run (:class:`WeightFedSession`). ``model`` itself is not changed."""
    if not is_large(model):
        if outputs:
            copy = onnx.ModelProto()
            copy.CopyFrom(model)
            model = add_outputs(copy, outputs)
        return model, {}
    light, names = detach_weights(model)
    add_outputs(light, outputs)
    # The large weights become graph inputs, fed with every run: ONNX Runtime reads a fed array in
    # place, where an initialiser (add_external_initializers) is copied when the session starts
    # (2.1 GB more per session for a 2 GB MatMul, measured with ONNX Runtime 1.32).
    detached = set(names)
    kept = [t for t in light.graph.initializer if t.name not in detached]
    for t in light.graph.initializer:
        if t.name in detached:
            light.graph.input.append(onnx.helper.make_tensor_value_info(t.name, t.data_type, list(t.dims)))
    del light.graph.initializer[:]
    light.graph.initializer.extend(kept)
    by_name = {t.name: t for t in model.graph.initializer}
    return light, {n: _array(by_name[n]) for n in names}


class WeightFedSession:
    """An ONNX Runtime session whose large weights are graph inputs it is fed on every run; the
    rest of the session's interface is the wrapped session's."""

    def __init__(self, session: Any, weights: dict[str, np.ndarray]) -> None:
        self._session, self._weights = session, weights

    def run(self, output_names, input_feed, run_options=None):
        return self._session.run(output_names, {**input_feed, **self._weights}, run_options)

    def io_binding(self):
        io = self._session.io_binding()
        for name, value in self._weights.items():
            io.bind_cpu_input(name, value)
        return io

    def get_inputs(self):
        return [i for i in self._session.get_inputs() if i.name not in self._weights]

    def __getattr__(self, name: str) -> Any:
        return getattr(self._session, name)


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
