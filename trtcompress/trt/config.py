"""What a user asks of a TensorRT build: :class:`BuildConfig`, and trtexec's shape syntax.

A profile is written as trtexec writes ``--minShapes``/``--optShapes``/``--maxShapes`` in one
string: ``x:1x3x224x224,x:8x3x224x224,x:32x3x224x224`` lists, for each input, its min, opt and
max shapes in that order; an input named once is fixed (min = opt = max). Several profiles are
several strings.
"""
from __future__ import annotations

import dataclasses
import re

from ..config import Config
from ..errors import ConfigError

__all__ = ["BuildConfig", "ProfileShapes", "parse_profile", "HARDWARE_COMPATIBILITY", "SPARSE_MODES", "REFIT_MODES"]

SPARSE_MODES = ("auto", "on", "off")
# off: not refittable; identical: REFIT_IDENTICAL (refit only with the build's own weights, same speed
# as a plain engine); any: REFIT (new weights of the same names and shapes). trtcompress/trt/plan.py
REFIT_MODES = ("off", "identical", "any")
# trtexec's spelling -> the trt.HardwareCompatibilityLevel member (8.6+)
HARDWARE_COMPATIBILITY = {"none": "NONE", "ampere+": "AMPERE_PLUS", "same-compute-capability": "SAME_COMPUTE_CAPABILITY"}

Shape = tuple[int, ...]
# one profile: input name -> (min, opt, max)
ProfileShapes = tuple[tuple[str, Shape, Shape, Shape], ...]


@dataclasses.dataclass(frozen=True)
class BuildConfig(Config):
    """Options of ``trtcompress build``; each field is one command-line flag (``_`` -> ``-``).

    ``target_version`` (e.g. ``10.3``) is the TensorRT the plan is made for: by default the one
    installed; ``--dry-run`` without one shows 8.6, 10.3, 10.13 and 11.x side by side.
    ``shapes``: one trtexec-style profile per entry (module docstring); without it every dynamic
    batch dimension gets min 1, opt ``opt_batch``, max ``max_batch``.
    """

    target_version: str | None = None
    fp16: bool = False
    sparse: str = "auto"  # auto: SPARSE_WEIGHTS when a layer follows 2:4 and TensorRT can use it
    shapes: tuple[str, ...] = ()
    opt_batch: int = 8
    max_batch: int = 32
    workspace_mib: int | None = None
    builder_optimization_level: int | None = None  # 0..5, TensorRT's default 3
    timing_cache: str | None = None  # read before and written after the build
    dla_core: int | None = None
    gpu_fallback: bool = True  # layers DLA cannot run go to the GPU
    version_compatible: bool = False
    hardware_compatibility: str = "none"  # none, ampere+, same-compute-capability
    weak_typing: bool = False  # 10.x only: INT8/FP16 builder flags instead of strong typing
    plugins: tuple[str, ...] = ()  # plugin libraries (.so) or Python plugin files (.py)
    strip_weights: bool = False  # 10.x+: STRIP_PLAN, the plan without its weights ('trtcompress refit' adds them)
    refit: str | None = None  # off, identical, any; default: identical when stripping, else off

    def validate(self) -> None:
        if self.sparse not in SPARSE_MODES:
            raise ConfigError(f"sparse must be one of {', '.join(SPARSE_MODES)}, got {self.sparse!r}")
        if not 1 <= self.opt_batch <= self.max_batch:
            raise ConfigError(f"need 1 <= opt_batch <= max_batch, got opt {self.opt_batch}, max {self.max_batch}")
        if self.workspace_mib is not None and self.workspace_mib < 1:
            raise ConfigError("workspace_mib must be >= 1 (MiB)")
        if self.builder_optimization_level is not None and not 0 <= self.builder_optimization_level <= 5:
            raise ConfigError(f"builder optimization level must be 0..5, got {self.builder_optimization_level}")
        if self.dla_core is not None and self.dla_core < 0:
            raise ConfigError("dla_core must be >= 0")
        if self.hardware_compatibility not in HARDWARE_COMPATIBILITY:
            raise ConfigError(f"hardware compatibility must be one of {', '.join(HARDWARE_COMPATIBILITY)}, got {self.hardware_compatibility!r}")
        if self.dla_core is not None and (self.version_compatible or self.hardware_compatibility != "none"):
            raise ConfigError("DLA engines cannot be version- or hardware-compatible; drop --dla-core or the compatibility option")
        if self.refit is not None and self.refit not in REFIT_MODES:
            raise ConfigError(f"refit must be one of {', '.join(REFIT_MODES)}, got {self.refit!r}")
        if self.strip_weights and self.refit == "off":
            raise ConfigError("--strip-weights makes a plan that runs only once refitted: drop --refit off (or use --refit identical / any)")
        if self.refit == "identical" and not self.strip_weights:
            raise ConfigError("--refit identical is for weight-stripped plans: add --strip-weights, or use --refit any for a full refittable engine")
        if self.target_version is not None:
            from .version import parse_version

            parse_version(self.target_version)
        for text in self.shapes:
            parse_profile(text)

    @property
    def refit_mode(self) -> str:
        """``refit`` with its default resolved: identical for a stripped plan, else off."""
        return self.refit or ("identical" if self.strip_weights else "off")

    def profiles(self) -> tuple[ProfileShapes, ...]:
        return tuple(parse_profile(t) for t in self.shapes)


def _dims(text: str, spec: str) -> Shape:
    if not re.fullmatch(r"\d+(x\d+)*", text):
        raise ConfigError(f"bad shape {text!r} in {spec!r}; write dimensions as 1x3x224x224")
    dims = tuple(int(d) for d in text.split("x"))
    if any(d < 1 for d in dims):
        raise ConfigError(f"dimensions must be >= 1 in {spec!r}")
    return dims


def parse_profile(text: str) -> ProfileShapes:
    """``x:1x3x224x224,x:8x3x224x224,x:32x3x224x224`` -> ``(("x", min, opt, max),)``."""
    per_input: dict[str, list[Shape]] = {}
    for spec in (s.strip() for s in text.split(",")):
        name, sep, dims = spec.rpartition(":")
        if not sep or not name:
            raise ConfigError(f"bad shape {spec!r} in profile {text!r}; expected NAME:DIMS, e.g. x:1x3x224x224")
        per_input.setdefault(name, []).append(_dims(dims, text))
    out = []
    for name, shapes in per_input.items():
        if len(shapes) == 1:
            shapes = shapes * 3
        if len(shapes) != 3:
            raise ConfigError(f"input {name!r} appears {len(shapes)} times in profile {text!r}; give it once (fixed) or three times (min, opt, max)")
        lo, opt, hi = shapes
        if not (len(lo) == len(opt) == len(hi)) or not all(a <= b <= c for a, b, c in zip(lo, opt, hi)):
            raise ConfigError(f"input {name!r} in profile {text!r}: need min <= opt <= max in every dimension, with the same rank")
        out.append((name, lo, opt, hi))
    return tuple(out)
