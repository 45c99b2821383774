"""``refit_engine``: fill a weight-stripped engine with the weights of a packed artifact (or ONNX).

A fleet update ships the small ``trtcompress pack`` artifact; each device keeps the stripped plan
built for its GPU and TensorRT, and refits it locally. Steps:

1. CPU, no TensorRT: read the engine's sidecar (it must say the engine is refittable), unpack the
   artifact (checksums verified), decode it to the dense form the engine was parsed from
   (``weights.engine_weights_model``) and compare its weights digest with the build's: another
   model's weights are refused here, in one line, before TensorRT sees them. A REFIT_IDENTICAL
   engine also needs the same values ("if the refit weights are not identical to the build-time
   weights, behavior is undefined": include/NvInfer.h, ``kREFIT_IDENTICAL``, v10.0.0 to 11.1).
2. TensorRT >= 10: deserialise through Polygraphy (``engine.engine_loader``: sidecar check, plugins),
   ``trt.Refitter`` + ``trt.OnnxParserRefitter(refitter, logger).refit_from_bytes(dense ONNX)`` (the
   path NVIDIA's samples/python/sample_weight_stripping takes: it applies the parser's own weight
   conversions, e.g. BatchNormalization folding, that plain ``set_named_weights`` would have to
   repeat), then ``Refitter.get_missing_weights()`` must be empty and ``refit_cuda_engine()`` true.
3. Serialise with ``EXCLUDE_WEIGHTS`` cleared (``ICudaEngine.create_serialization_config`` /
   ``serialize_with_config``, python/src/infer/pyCore.cpp, v10.0.0), write the plan and its sidecar
   atomically. The stripped plan stays the base of the next update: the refitted plan is not
   refittable again unless serialised with ``INCLUDE_REFIT`` (10.14+), which we do not need.
"""
from __future__ import annotations

import dataclasses
import os
import time
from pathlib import Path
from typing import Any

import onnx

from ..errors import ConfigError, ModelError
from .sidecar import file_sha256, read_sidecar, sidecar_path
from .version import parse_version

__all__ = ["RefitInputs", "RefitResult", "prepare_refit", "refit_engine"]


@dataclasses.dataclass
class RefitInputs:
    """What the CPU side hands TensorRT: the checked sidecar and the dense model's bytes."""

    engine_path: Path
    source_path: Path
    source_kind: str  # artifact or onnx
    sidecar: dict[str, Any]
    dense: onnx.ModelProto
    digest: dict[str, Any]


@dataclasses.dataclass
class RefitResult:
    engine_path: Path
    output_path: Path
    sidecar_path: Path
    source_path: Path
    source_kind: str
    tensorrt_version: str
    weights_refitted: int
    sizes: dict[str, int]  # stripped engine, shipped source, refitted engine (bytes)
    seconds: float

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        return {k: str(v) if isinstance(v, Path) else v for k, v in d.items()}


def _refit_block(engine_path: Path, sidecar: dict[str, Any] | None) -> dict[str, Any]:
    if sidecar is None:
        raise ModelError(f"{engine_path} has no sidecar {sidecar_path(engine_path).name}: cannot tell whether it is refittable or which weights it holds; "
                         "build it with 'trtcompress build --strip-weights'")
    block = sidecar.get("refit")
    if not isinstance(block, dict) or block.get("mode", "off") == "off" or "weights" not in block:
        raise ModelError(f"{engine_path} was not built refittable; rebuild it with 'trtcompress build --strip-weights' (TensorRT >= 10)")
    if block.get("refitted"):
        source = (block.get("refitted_from") or {}).get("path", "its artifact")
        raise ModelError(f"{engine_path} is an already refitted engine (from {source}), not refittable again: refit the stripped plan it came from")
    if not parse_version(sidecar["tensorrt_version"], supported_only=False).weight_stripping:
        raise ConfigError(f"{engine_path} is a TensorRT {sidecar['tensorrt_version']} engine; refit from ONNX needs TensorRT >= 10")
    return block


def prepare_refit(engine_path: str | os.PathLike, source: str | os.PathLike) -> RefitInputs:
    """Every check that needs no TensorRT (module docstring, step 1)."""
    from .weights import describe_mismatch, engine_weights_model, read_weights_source, weights_record

    engine_path, source = Path(engine_path), Path(source)
    if not engine_path.is_file():
        raise ModelError(f"engine file not found: {engine_path}")
    sidecar = read_sidecar(engine_path)
    block = _refit_block(engine_path, sidecar)
    model, kind = read_weights_source(source)
    convert_fp16 = bool((sidecar.get("build_options") or {}).get("convert_fp16"))
    dense = engine_weights_model(model, convert_fp16)
    given = weights_record(dense)
    digest, built = given["weights"], block["weights"]
    if digest["structure"] != built["structure"]:
        detail = describe_mismatch(block.get("shapes") or {}, given["shapes"]) or "other names/shapes"
        raise ModelError(
            f"{source} does not hold the weights {engine_path.name} was built from ({digest['count']} weights against {built['count']}; {detail}); "
            "ship the model the engine was built from, or rebuild the engine from this one"
        )
    if block["mode"] == "identical" and digest["values"] != built["values"]:
        raise ModelError(
            f"{engine_path.name} was built with REFIT_IDENTICAL and {source} holds other weight values; refitting it with them is undefined "
            "in TensorRT: ship the weights it was built with, or rebuild with --strip-weights --refit any to ship new ones"
        )
    return RefitInputs(engine_path, source, kind, sidecar, dense, digest)


def _errors(parser_refitter) -> str:
    errs = [str(parser_refitter.get_error(i).desc()) for i in range(parser_refitter.num_errors)]
    return errs[0] if errs else "no error was reported"


def refit_engine(engine_path: str | os.PathLike, source: str | os.PathLike, output: str | os.PathLike) -> RefitResult:
    """Refit the stripped ``engine_path`` with the weights in ``source`` (artifact or ONNX) and
    write the runnable plan to ``output`` (and ``output.json``), atomically."""
    from .._optional import require
    from ..fileio import atomic_path, require_file_target, write_json
    from .version import installed_version

    start = time.perf_counter()
    inputs = prepare_refit(engine_path, source)
    output = require_file_target(output)
    trt = require("tensorrt", "refitting TensorRT engines")
    here = installed_version()
    if not here.weight_stripping:
        raise ConfigError(f"TensorRT {here} cannot refit from ONNX (OnnxParserRefitter and serialize_with_config came in 10.0); refit on TensorRT >= 10")
    from polygraphy.backend.trt import util as trt_util

    from .engine import engine_loader

    engine = engine_loader(inputs.engine_path, allow_stripped=True)()
    if not engine.refittable:
        raise ModelError(f"{inputs.engine_path} is not refittable according to TensorRT; rebuild it with 'trtcompress build --strip-weights'")
    logger = trt_util.get_trt_logger()
    refitter = trt.Refitter(engine, logger)
    names = list(refitter.get_all_weights())
    parser_refitter = trt.OnnxParserRefitter(refitter, logger)
    if not parser_refitter.refit_from_bytes(inputs.dense.SerializeToString()):
        raise ModelError(f"TensorRT's ONNX refitter could not refit {inputs.engine_path.name} from {inputs.source_path}: {_errors(parser_refitter)}")
    missing = sorted(m or "<unnamed>" for m in refitter.get_missing_weights())  # None: weights TensorRT named none
    if missing:
        shown = ", ".join(missing[:8]) + (f" and {len(missing) - 8} more" if len(missing) > 8 else "")
        raise ModelError(f"{len(missing)} weight(s) of {inputs.engine_path.name} were not supplied by {inputs.source_path}: {shown}; rebuild the engine from this model")
    if not refitter.refit_cuda_engine():
        raise ModelError(f"TensorRT refused to refit {inputs.engine_path.name} (see its log above); rebuild the engine from {inputs.source_path}")
    config = engine.create_serialization_config()
    config.clear_flag(trt.SerializationFlag.EXCLUDE_WEIGHTS)
    plan = engine.serialize_with_config(config)
    if plan is None:
        raise ModelError(f"TensorRT could not serialise the refitted {inputs.engine_path.name}")
    with atomic_path(output) as tmp:
        tmp.write_bytes(bytes(plan))
    side = dict(inputs.sidecar)
    # not refittable again (no INCLUDE_REFIT): the next update refits the stripped plan
    side["refit"] = {**side["refit"], "stripped": False, "refitted": True, "engine_bytes": output.stat().st_size,
                     "refitted_from": {"path": str(inputs.source_path), "kind": inputs.source_kind, "sha256": file_sha256(inputs.source_path)}}
    side_out = write_json(sidecar_path(output), side)
    sizes = {"stripped_engine_bytes": inputs.engine_path.stat().st_size, "source_bytes": inputs.source_path.stat().st_size,
             "dense_onnx_bytes": inputs.dense.ByteSize(), "refitted_engine_bytes": output.stat().st_size}
    return RefitResult(inputs.engine_path, output, Path(side_out), inputs.source_path, inputs.source_kind, str(here), len(names), sizes, time.perf_counter() - start)
