"""What ``compress --target-trt VERSION`` changes in each stage, as a registry keyed by config type.

Each adapter takes a stage config and the :class:`Target` and returns the config that writes what
that TensorRT takes, with one line per change for the report. Stages without an adapter run as
configured.
"""
from __future__ import annotations

import dataclasses
import math
from typing import Callable

from ..config import Config
from ..errors import ConfigError
from .version import TrtVersion, parse_version

__all__ = ["Target", "adapt_stages", "register_adapter", "rank_multiple", "TENSOR_CORE_MULTIPLE"]

# Dimensions that map onto Tensor Cores without padding: multiples of 8 elements for FP16 and 16
# for INT8 (16 bytes either way; NVIDIA Deep Learning Performance, "Matrix Multiplication Background
# User's Guide", Tensor Core Requirements). A factorised layer's rank r is the inner (reduction)
# dimension of its second factor, so r must also split into 2:4 groups of 4 for sparse kernels:
# both multiples are multiples of 4.
TENSOR_CORE_MULTIPLE = {"fp16": 8, "int8": 16}


def rank_multiple(int8: bool) -> int:
    return TENSOR_CORE_MULTIPLE["int8" if int8 else "fp16"]


@dataclasses.dataclass(frozen=True)
class Target:
    version: TrtVersion
    int8: bool = False  # the job quantizes (a quantize stage for TensorRT)
    calibration_cache: bool = False  # also write the TensorRT calibration cache (<= 10)


Adapter = Callable[[Config, Target], "tuple[Config, list[str]]"]
_ADAPTERS: dict[str, Adapter] = {}


def register_adapter(stage: str) -> Callable[[Adapter], Adapter]:
    def deco(fn: Adapter) -> Adapter:
        _ADAPTERS[stage] = fn
        return fn

    return deco


def adapt_stages(stages: tuple[Config, ...], version: str | TrtVersion, calibration_cache: bool = False) -> tuple[tuple[Config, ...], list[str]]:
    """``stages`` changed for TensorRT ``version``, and the changes as report lines."""
    from ..stage import get_stage

    version = parse_version(version)
    names = [get_stage(s).name for s in stages]
    if calibration_cache and "quantize" not in names:
        raise ConfigError("a calibration cache comes from calibration: add a quantize stage (--stages ...,quantize) or drop --calibration-cache")
    target = Target(version, int8="quantize" in names, calibration_cache=calibration_cache)
    out, notes = [], []
    for name, stage in zip(names, stages):
        adapter = _ADAPTERS.get(name)
        if adapter is None:
            out.append(stage)
            continue
        new, lines = adapter(stage, target)
        out.append(new)
        notes += [f"{name}: {line}" for line in lines]
    return tuple(out), notes


@register_adapter("lowrank")
def _lowrank(config, target: Target) -> tuple[Config, list[str]]:
    need = rank_multiple(target.int8)
    multiple = math.lcm(config.rank_multiple, need)
    if multiple == config.rank_multiple:
        return config, []
    why = "INT8" if target.int8 else "FP16"
    return config.replace(rank_multiple=multiple), [
        f"ranks rounded up to multiples of {multiple} ({why} Tensor Core tiles; also whole 2:4 groups); a layer whose rounded rank passes the break-even stays dense"
    ]


@register_adapter("quantize")
def _quantize(config, target: Target) -> tuple[Config, list[str]]:
    if config.target != "tensorrt":
        raise ConfigError(f"--target-trt writes for TensorRT, but the quantize stage's target is {config.target!r}: drop one of them")
    changes: dict = {"target_trt": str(target.version)}
    lines = [f"Q/DQ placed for TensorRT {target.version}'s INT8 kernels"]
    if target.calibration_cache:
        target.version.cache_version_number  # TensorRT 11 has no calibration cache: the one-line refusal
        changes["trt_version"] = str(target.version)
        lines.append(f"calibration cache written for TensorRT {target.version} (use it with the FP32 ONNX)")
    return config.replace(**changes), lines
