"""Run the exporters and check the ONNX model against torch."""
from __future__ import annotations

import io
import logging
import os
import warnings
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import onnx

from .._optional import require
from ..comparison import OutputStats
from ..data.base import model_inputs
from ..data.readers import ReaderOptions, open_source
from ..errors import ConfigError, ModelError, UserError
from ..model_io import save_model
from ..progress import task
from ..specs import InputSpec
from ..trt.opset import convert_down, default_opset
from .config import ExportConfig, ExportResult
from .loader import load_torch_model

log = logging.getLogger(__name__)


DataArg = "FeedSource | Callable[[list[ModelInput]], FeedSource] | None"


def export(model_ref: str | Any, out_path: str | os.PathLike, config: ExportConfig, data: DataArg = None) -> ExportResult:
    """Load ``model_ref`` (a reference string or a module) and export it to ``out_path``.

    ``data`` (real inputs for the check) may be a source, or a function that opens one for the
    exported model's inputs.
    """
    name = model_ref if isinstance(model_ref, str) else type(model_ref).__name__
    with task(f"exporting {name} to ONNX"):
        model = load_torch_model(model_ref) if isinstance(model_ref, str) else model_ref
        return export_module(model, out_path, config, data)


def export_module(model: Any, out_path: str | os.PathLike, config: ExportConfig, data: DataArg = None) -> ExportResult:
    torch = require("torch", "exporting to ONNX")
    specs = config.specs()
    if not specs:
        raise ConfigError("give the model's inputs, e.g. --input x:1x3x224x224 (one per forward() argument, in order)")
    is_script = isinstance(model, torch.jit.ScriptModule)
    if isinstance(model, torch.nn.Module):
        model = model.eval()
    # a dynamic batch is traced with batch 2: torch.export specialises a dimension of size 1
    trace_batch = 2 if config.dynamic_batch else None
    example = _example_inputs(specs, trace_batch, config.seed)
    names = [s.name for s in specs]
    with torch.no_grad():
        ref_out = _call(model, example)
    out_names = ["output"] if len(ref_out) == 1 else [f"output_{i}" for i in range(len(ref_out))]

    exporters = {"auto": ("dynamo", "torchscript"), "dynamo": ("dynamo",), "torchscript": ("torchscript",)}[config.exporter]
    if is_script:
        exporters = ("torchscript",)
    proto, used, reason = None, None, None
    for name in exporters:
        try:
            proto = _EXPORTERS[name](torch, model, example, names, out_names, config)
            used = name
            break
        except UserError:
            raise
        except Exception as e:  # exporter failures are many and varied; keep the first line
            first = (str(e).strip().splitlines() or [type(e).__name__])[0][:300]
            reason = f"{name} exporter failed: {type(e).__name__}: {first}"
            log.info(reason)
    if proto is None:
        raise ModelError(f"ONNX export failed: {reason}")
    if default_opset(proto) > config.opset:
        # torch's dynamo exporter writes opset 18 graphs whatever opset_version asks for (seen with
        # torch 2.13 and opset 17): convert down so the file is at the opset asked for (TensorRT 8.6)
        proto = convert_down(proto, config.opset, "as asked")
    path = save_model(proto, out_path, external_data=config.external_data)
    check = _check_against_torch(model, path, specs, config, data)
    return ExportResult(str(path), used, reason if used != exporters[0] else None, names, out_names, check)


def _example_inputs(specs: Sequence[InputSpec], batch: int | None, seed: int) -> tuple:
    torch = require("torch")
    rng = np.random.default_rng(seed)
    out = []
    for s in specs:
        shape = s.concrete_shape(batch)
        if s.np_dtype.kind == "f":
            a = rng.standard_normal(shape).astype(s.np_dtype)
        else:
            # 0/1 is valid for every integer input (a token id, a token type, a mask, an index):
            # the module's tables are unknown before export; the check after it draws from the
            # ranges the exported graph shows
            a = rng.integers(0, 2, shape).astype(s.np_dtype)
        out.append(torch.from_numpy(a))
    return tuple(out)


def _call(model: Any, args: tuple) -> list:
    torch = require("torch")
    fn = model.module() if isinstance(model, torch.export.ExportedProgram) else model
    out = fn(*args)
    if isinstance(out, torch.Tensor):
        return [out]
    if isinstance(out, dict):
        return list(out.values())
    if isinstance(out, (tuple, list)):
        return list(out)
    raise ModelError(f"the model returned {type(out).__name__}; export needs tensors, or a tuple/list/dict of tensors")


def _dynamo(torch, model, example, names, out_names, config: ExportConfig) -> onnx.ModelProto:
    axes = config.dynamic_axes()
    dynamic = None
    if axes:
        # one Dim per name, so inputs that share a name share the dimension; the batch may be 1,
        # other dimensions at least 2 (torch.export specialises a dimension of size 1)
        dims = {d: torch.export.Dim(d, min=1 if d == "batch" else 2, max=65536) for a in axes.values() for d in a.values()}
        dynamic = tuple({axis: dims[d] for axis, d in axes.get(n, {}).items()} or None for n in names)
    quiet = logging.getLogger("torch.onnx")
    level = quiet.level
    quiet.setLevel(logging.ERROR)  # it warns about optional torchvision ops on every export
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            program = torch.onnx.export(
            model, example, dynamo=True, input_names=names, output_names=out_names,
                opset_version=config.opset, dynamic_shapes=dynamic, external_data=False, verbose=False,
            )
    finally:
        quiet.setLevel(level)
    return program.model_proto


def _torchscript(torch, model, example, names, out_names, config: ExportConfig) -> onnx.ModelProto:
    if isinstance(model, torch.export.ExportedProgram):
        model = model.module()
    axes: dict[str, dict[int, str]] = {**config.dynamic_axes()}
    if config.dynamic_batch:
        axes.update({n: {0: "batch"} for n in out_names})  # other output dims follow from shape inference
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            model, example, buf, dynamo=False, input_names=names, output_names=out_names,
            opset_version=min(config.opset, 20), dynamic_axes=axes or None, do_constant_folding=True,
        )
    return onnx.load_from_string(buf.getvalue())


_EXPORTERS = {"dynamo": _dynamo, "torchscript": _torchscript}


def _check_against_torch(model: Any, path: Path, specs: Sequence[InputSpec], config: ExportConfig, data: DataArg) -> dict[str, Any]:
    """Largest absolute/relative error of ONNX Runtime against torch, on random and on real inputs."""
    torch = require("torch")
    from ..sessions import open_session

    sess = open_session(path)
    inputs = model_inputs(path)
    batch = specs[0].concrete_shape()[0] if specs[0].shape else 1
    shapes = {s.name: s.concrete_shape(batch) for s in specs}
    sources = {"random": open_source(f"random:{config.check_batches}", inputs, ReaderOptions(batch_size=batch, seed=config.seed + 1, shapes=shapes))}
    resized = _resized(shapes, config)
    if resized:
        # dynamic dimensions beyond the batch are checked at twice their traced size as well
        # (doubling keeps any stride the traced size was divisible by)
        sources["random_resized"] = open_source(f"random:{config.check_batches}", inputs, ReaderOptions(batch_size=batch, seed=config.seed + 2, shapes=resized))
    if data is not None:
        sources["data"] = data(inputs) if callable(data) else data
    report: dict[str, Any] = {}
    for kind, src in sources.items():
        stats = OutputStats()
        n = 0
        for feed in src:
            with torch.no_grad():
                ref = _call(model, tuple(torch.from_numpy(np.ascontiguousarray(feed[s.name])) for s in specs))
            got = sess.run(None, feed)
            for r, g in zip(ref, got):
                stats.update(r.detach().cpu().numpy(), g, None, None)
            n += 1
        d = stats.to_dict()
        report[kind] = {"batches": n, "max_abs": d["max_abs"], "max_rel": d["max_rel"], "mean_abs": d["mean_abs"]}
        if kind == "random_resized":
            report[kind]["shapes"] = {k: list(v) for k, v in resized.items()}
    return report


def _resized(shapes: dict[str, tuple[int, ...]], config: ExportConfig) -> dict[str, tuple[int, ...]]:
    """``shapes`` with every dynamic dimension but the batch doubled ({} when there is none)."""
    axes = config.dynamic_axes()
    names = {d for a in axes.values() for axis, d in a.items() if d != "batch"}
    if not names:
        return {}
    out = {}
    for name, shape in shapes.items():
        dims = list(shape)
        for axis, d in axes.get(name, {}).items():
            if d in names:
                dims[axis] *= 2
        out[name] = tuple(dims)
    return out
