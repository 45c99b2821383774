"""Load, check and save ONNX models, including models over 2 GB (ONNX external data)."""
from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import numpy as np
import onnx
from onnx import numpy_helper

from .errors import ModelError
from .fileio import output_errors, publish_mode, require_file_target
from .weightless import check_weightless, has_external_data, infer_weightless, is_large, model_nbytes

__all__ = [
    "load_model",
    "require_model_file",
    "save_model",
    "check_model",
    "infer_shapes",
    "model_nbytes",
    "parameter_count",
    "require_float_weights",
    "file_size",
    "PROTOBUF_LIMIT",
]

PROTOBUF_LIMIT = 2**31 - 1  # protobuf cannot serialise a message of 2 GB or more
# Initialisers at least this big go to the external data file when a model is saved externally.
EXTERNAL_THRESHOLD = 1024


def _require_file(path: str | os.PathLike) -> Path:
    p = Path(path)
    if not p.exists():
        raise ModelError(f"model file not found: {p}; check the path")
    if p.is_dir():
        raise ModelError(f"{p} is a directory, not an ONNX file; give the .onnx file inside it")
    if p.stat().st_size == 0:
        raise ModelError(f"{p} is empty (0 bytes); re-export or re-download the model")
    return p


def require_model_file(path: str | os.PathLike) -> Path:
    """Check that ``path`` is a readable ONNX file (header and external data files; weights not loaded)."""
    load_model(path, load_external_data=False, check=False)
    return Path(path)


def load_model(path: str | os.PathLike, load_external_data: bool = True, check: bool = True) -> onnx.ModelProto:
    """Read an ONNX file (and its external data) with a one-line error for a bad file.

    ``load_external_data=False`` keeps large weights on disk: the model then refers to them by
    location relative to the file's directory.
    """
    p = _require_file(path)
    try:
        model = onnx.load(str(p), load_external_data=False)
    except Exception as e:  # protobuf DecodeError, or a truncated varint
        raise ModelError(f"{p} is not a readable ONNX model ({type(e).__name__}); the file is corrupt or truncated: re-export it") from e
    if not model.HasField("graph") or not model.opset_import:
        raise ModelError(f"{p} is not a complete ONNX model (no graph or no opset); the file is truncated or not ONNX: re-export it")
    if not model.graph.output:
        raise ModelError(f"{p} has no graph outputs, so it computes nothing; the file is damaged or was cut down: re-export it")
    _check_opset(model, p)
    _check_external_files(model, p.parent)
    if check:
        _check(model, p)
    if load_external_data:
        try:
            onnx.external_data_helper.load_external_data_for_model(model, str(p.parent))
        except Exception as e:
            raise ModelError(f"cannot read the external data of {p} ({e}); keep the .data file beside the .onnx file") from e
    return model


# ONNX Runtime runs default-domain opsets from 7 on; the onnx package knows opsets up to its own
MIN_OPSET = 7


def _check_opset(model: onnx.ModelProto, path: Path) -> None:
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), None)
    if opset is None:
        return
    newest = onnx.defs.onnx_opset_version()
    if opset > newest:
        raise ModelError(f"{path} uses ONNX opset {opset}, newer than this onnx package knows ({newest}); re-export with --opset {newest} or upgrade onnx and onnxruntime")
    if opset < MIN_OPSET:
        raise ModelError(f"{path} uses ONNX opset {opset}, older than ONNX Runtime runs ({MIN_OPSET}); convert it with onnx.version_converter.convert_version(model, 17)")


def _check_external_files(model: onnx.ModelProto, base: Path) -> None:
    for t in onnx.external_data_helper._get_all_tensors(model):
        if t.data_location != onnx.TensorProto.EXTERNAL:
            continue
        info = {e.key: e.value for e in t.external_data}
        f = base / info.get("location", "")
        if not f.is_file():
            raise ModelError(f"external data file {f} for tensor {t.name!r} is missing; keep it beside the .onnx file")
        end = int(info.get("offset", 0)) + int(info.get("length", 0))
        if end > f.stat().st_size:
            raise ModelError(f"external data file {f} is truncated (tensor {t.name!r} needs {end} bytes, file has {f.stat().st_size}); re-export the model")


def _check(model: onnx.ModelProto, path: Path | None = None) -> None:
    try:
        if path is not None and (has_external_data(model) or model.ByteSize() > PROTOBUF_LIMIT // 2):
            # by path, so the checker finds external data beside the file
            onnx.checker.check_model(str(path))
        elif is_large(model):
            check_weightless(model)
        else:
            onnx.checker.check_model(model)
    except onnx.checker.ValidationError as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        where = f"{path}: " if path else ""
        raise ModelError(f"{where}ONNX checker failed: {first}") from e


def check_model(model: onnx.ModelProto | str | os.PathLike) -> None:
    """Run the ONNX checker; raises :class:`ModelError` with the checker's first line."""
    if isinstance(model, (str, os.PathLike)):
        p = _require_file(model)
        _check(onnx.load(str(p), load_external_data=False), p)
    else:
        _check(model)


def parameter_count(model: onnx.ModelProto) -> int:
    """Number of elements in the initialisers of the graph and of its If/Loop/Scan bodies, and in
    the weight-sized tensors of Constant nodes there (exporters write a body's weights that way)."""
    from .subgraphs import walk

    n = 0
    for graph, scope in walk(model.graph):
        for t in graph.initializer:
            n += int(np.prod(t.dims)) if t.dims else 1
        if scope:
            for node in graph.node:
                if node.op_type == "Constant" and node.attribute and node.attribute[0].name == "value" and len(node.attribute[0].t.dims) >= 2:
                    n += int(np.prod(node.attribute[0].t.dims))
    return n


_FLOAT_TYPES = frozenset({onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16, onnx.TensorProto.BFLOAT16, onnx.TensorProto.DOUBLE})


def require_float_weights(model: onnx.ModelProto, action: str) -> None:
    """Refuse a model without floating-point weights (initialisers or Constant nodes): an already
    quantized or weightless graph, where ``action`` would silently do nothing. If/Loop/Scan bodies
    count (silero-vad keeps every weight inside the branches of an If)."""
    from .subgraphs import walk

    for graph, _ in walk(model.graph):
        if any(t.data_type in _FLOAT_TYPES for t in graph.initializer):
            return
        for n in graph.node:
            if n.op_type == "Constant" and any(a.t.data_type in _FLOAT_TYPES and len(a.t.dims) >= 2 for a in n.attribute if a.name == "value"):
                return
    raise ModelError(f"the model has no float weights, so there is nothing to {action}; give the FP32 model (e.g. the output of 'trtcompress export'), not a quantized or weight-free one")


def file_size(path: str | os.PathLike) -> int:
    """Size on disk of an ONNX file plus the external data files it refers to."""
    p = Path(path)
    size = p.stat().st_size
    model = onnx.load(str(p), load_external_data=False)
    seen = set()
    for t in onnx.external_data_helper._get_all_tensors(model):
        if t.data_location == onnx.TensorProto.EXTERNAL:
            loc = {e.key: e.value for e in t.external_data}.get("location")
            if loc and loc not in seen:
                seen.add(loc)
                size += (p.parent / loc).stat().st_size
    return size


def save_model(
    model: onnx.ModelProto,
    path: str | os.PathLike,
    external_data: bool | None = None,
    check: bool = True,
    base_dir: str | os.PathLike | None = None,
) -> Path:
    """Write ``model`` atomically. External data is used when asked, or when the model is too big.

    Files are written into a temporary directory beside ``path`` and renamed into place, the .onnx
    last, so a failure leaves no half-written artifact. A model whose weights are still in another
    model's external data file needs ``base_dir``, that model's folder. Initialisers are moved, not copied, into
    the external file, so memory does not double for large models.
    """
    path = require_file_target(path)
    with output_errors(path):
        path.parent.mkdir(parents=True, exist_ok=True)
    if has_external_data(model):
        # weights still on disk (loaded with load_external_data=False): read them from where they are
        if base_dir is None:
            raise ModelError("the model's weights are still in its external data file; pass base_dir (the source model's folder) or load it with load_external_data=True")
        onnx.external_data_helper.load_external_data_for_model(model, str(base_dir))
    if external_data is None:
        external_data = is_large(model)
    data_name = path.name + ".data"
    with output_errors(path):
        tmpdir = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
    try:
        with output_errors(path):
            tmp = tmpdir / path.name
            if external_data:
                # onnx.save moves raw_data into the file and clears it from the proto, one copy at a time.
                onnx.save_model(
                    model,
                    str(tmp),
                    save_as_external_data=True,
                    all_tensors_to_one_file=True,
                    location=data_name,
                    size_threshold=EXTERNAL_THRESHOLD,
                    convert_attribute=False,
                )
            else:
                onnx.save_model(model, str(tmp))
            if check:
                _check(onnx.load(str(tmp), load_external_data=False), tmp)
            stale = path.parent / data_name
            if (tmpdir / data_name).exists():
                publish_mode(tmpdir / data_name)
                os.replace(tmpdir / data_name, stale)
            elif stale.exists():
                stale.unlink()
            publish_mode(tmp)
            os.replace(tmp, path)
    finally:
        shutil.rmtree(tmpdir, ignore_errors=True)
    # After an external save the proto refers to the data file beside ``path`` instead of holding it.
    return path


def infer_shapes(model: onnx.ModelProto) -> onnx.ModelProto:
    """ONNX shape inference; on the weightless copy for models over the protobuf limit."""
    try:
        if not is_large(model):
            return onnx.shape_inference.infer_shapes(model, data_prop=True)
        return infer_weightless(model)
    except Exception as e:
        raise ModelError(f"ONNX shape inference failed: {str(e).strip().splitlines()[0]}") from e


def initializer_array(model: onnx.ModelProto, name: str, base_dir: str | os.PathLike | None = None) -> np.ndarray:
    """The value of an initialiser as a numpy array (reading external data from ``base_dir``)."""
    for t in model.graph.initializer:
        if t.name == name:
            return numpy_helper.to_array(t, base_dir=str(base_dir) if base_dir else "")
    raise KeyError(name)
