"""One pure mapping from (model facts, :class:`BuildConfig`, :class:`TrtVersion`) to a :class:`BuildPlan`.

The version table it follows (../shared/FIELD.md has the sources):

- 8.6: weakly typed only. A Q/DQ model needs the INT8 flag (else "Int8 precision has been set
  for a layer ... but int8 is not configured in the builder"); ``--fp16`` is the FP16 flag.
- 10.x: strongly typed, so the ONNX types decide precision; ``--fp16`` converts the ONNX to
  float16 (the FP16 flag is refused with strong typing). ``weak_typing`` asks for 8.6's way
  (deprecated from 10.12).
- 11.x: strongly typed only; no INT8/FP16 flags exist.

Weight stripping (10.0+, ``TrtVersion.weight_stripping``): ``--strip-weights`` sets ``STRIP_PLAN``
with ``REFIT_IDENTICAL`` (trtexec's ``--stripWeights`` does the same: samples/common/sampleEngines.cpp,
v10.3.0, "kREFIT_IDENTICAL is enabled by default when kSTRIP_PLAN is on"), or with ``REFIT`` for
``--refit any``. Such a build parses the decoded dense form of a shared model (``trt/weights.py``).

``SPARSE_WEIGHTS`` follows ``trtcompress.sparsity.inspect``: on in ``auto`` when a layer follows
2:4 and TensorRT could use sparse kernels for it.
"""
from __future__ import annotations

import dataclasses
from typing import Any

import onnx

from ..errors import ConfigError, ModelError
from .config import BuildConfig, ProfileShapes
from .version import TrtVersion

__all__ = ["ModelFacts", "BuildPlan", "model_facts", "make_plan"]

_QDQ = {"QuantizeLinear", "DequantizeLinear"}
# ONNX Runtime's integer operator form (``quantize --target cpu``): onnx-tensorrt's operator matrix
# lists QLinearConv and QLinearMatMul as unsupported (docs/operators.md, 8.x to 10.x) and has no
# importer for the Integer ops or the com.microsoft contrib ops
_CPU_FORM = {"QLinearConv", "QLinearMatMul", "ConvInteger", "MatMulInteger", "DynamicQuantizeLinear"}


@dataclasses.dataclass(frozen=True)
class ModelFacts:
    """What the plan needs to know about the ONNX model, read once by :func:`model_facts`."""

    inputs: tuple[tuple[str, tuple[int | str | None, ...]], ...]  # name, shape (str/None: dynamic)
    has_qdq: bool
    has_fp16: bool  # float16 tensors or initializers: the model carries FP16 precision itself
    sparse_layers: tuple[str, ...]  # layers whose weights follow 2:4 and TensorRT could run sparse
    opset: int
    cpu_form_ops: tuple[str, ...] = ()  # operators of ONNX Runtime's CPU form, which TensorRT cannot parse


def model_facts(model: onnx.ModelProto) -> ModelFacts:
    from ..data.base import model_inputs
    from ..sparsity.inspect import inspect_layers

    ops = {n.op_type for n in model.graph.node}
    f16 = onnx.TensorProto.FLOAT16
    typed = list(model.graph.input) + list(model.graph.output) + list(model.graph.value_info)
    has_fp16 = any(t.data_type == f16 for t in model.graph.initializer) or any(v.type.tensor_type.elem_type == f16 for v in typed)
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)
    return ModelFacts(
        inputs=tuple((i.name, tuple(i.shape)) for i in model_inputs(model)),
        has_qdq=bool(ops & _QDQ),
        has_fp16=has_fp16,
        sparse_layers=tuple(l.layer for l in inspect_layers(model) if l.sparse_ready),
        opset=opset,
        cpu_form_ops=tuple(sorted({n.op_type for n in model.graph.node if n.op_type in _CPU_FORM or n.domain == "com.microsoft"})),
    )


@dataclasses.dataclass(frozen=True)
class BuildPlan:
    """What to hand TensorRT: every field maps onto one Polygraphy loader argument (``loaders.py``)
    and one trtexec flag (``trtexec.py``)."""

    version: str
    strongly_typed: bool
    int8: bool  # the INT8 builder flag (weak typing)
    fp16: bool
    convert_fp16: bool  # the ONNX is converted to float16 before parsing (strong typing)
    sparse_weights: bool
    profiles: tuple[ProfileShapes, ...]
    workspace_mib: int | None
    builder_optimization_level: int | None
    timing_cache: str | None
    dla_core: int | None
    gpu_fallback: bool
    version_compatible: bool
    hardware_compatibility: str
    plugins: tuple[str, ...]
    sparse_layers: tuple[str, ...]
    notes: tuple[str, ...]
    qdq: bool = False  # the model carries INT8 in Q/DQ: int8 layers are expected, typed or not
    strip_weights: bool = False  # STRIP_PLAN
    refit: str = "off"  # off, identical (REFIT_IDENTICAL), any (REFIT)

    @property
    def precisions(self) -> tuple[str, ...]:
        """Precisions the user expects layers in (what the report checks the engine against)."""
        out = ["fp32"]
        if self.fp16 or self.convert_fp16:
            out.append("fp16")
        if self.int8 or self.qdq:
            out.append("int8")
        return tuple(out)

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["profiles"] = [{name: {"min": list(lo), "opt": list(opt), "max": list(hi)} for name, lo, opt, hi in p} for p in self.profiles]
        d["precisions"] = list(self.precisions)
        return d


def _default_profile(facts: ModelFacts, config: BuildConfig) -> tuple[ProfileShapes, ...]:
    """Dynamic batch (dimension 0) gets min 1, opt ``opt_batch``, max ``max_batch``; any other
    dynamic dimension has no sensible default, so the user must give ``--shapes``."""
    profile = []
    dynamic = False
    for name, shape in facts.inputs:
        for axis, d in enumerate(shape):
            if not isinstance(d, int) and axis > 0:
                raise ConfigError(
                    f"input {name!r} has a dynamic dimension {axis} ({d or '?'}); give its range with "
                    f"--shapes {name}:MIN,{name}:OPT,{name}:MAX (e.g. {name}:1x128,{name}:8x128,{name}:32x128)"
                )
        if shape and not isinstance(shape[0], int):
            dynamic = True
            rest = tuple(int(d) for d in shape[1:])
            profile.append((name, (1, *rest), (config.opt_batch, *rest), (config.max_batch, *rest)))
        else:
            fixed = tuple(int(d) for d in shape)
            profile.append((name, fixed, fixed, fixed))
    return (tuple(profile),) if dynamic else ()


def _check_profiles(facts: ModelFacts, profiles: tuple[ProfileShapes, ...]) -> None:
    inputs = dict(facts.inputs)
    for p in profiles:
        named = {name for name, *_ in p}
        unknown = named - set(inputs)
        if unknown:
            raise ConfigError(f"--shapes names {', '.join(sorted(unknown))}, which the model does not have (inputs: {', '.join(inputs)})")
        for name, lo, _, hi in p:
            shape = inputs[name]
            if len(lo) != len(shape) or any(isinstance(d, int) and not (a == d == b) for d, a, b in zip(shape, lo, hi)):
                raise ConfigError(f"--shapes for {name!r} do not fit its shape {list(shape)}: fixed dimensions must stay as they are")
        missing = [n for n, s in facts.inputs if n not in named and any(not isinstance(d, int) for d in s)]
        if missing:
            raise ConfigError(f"a --shapes profile leaves dynamic input(s) {', '.join(missing)} without a range; name every dynamic input in each profile")


def make_plan(facts: ModelFacts, config: BuildConfig, version: TrtVersion) -> BuildPlan:
    """The build for ``version``; raises :class:`ConfigError` for a combination it cannot build."""
    if facts.cpu_form_ops:  # the model's own fault, whatever the version (ModelError, not ConfigError)
        raise ModelError(
            f"the model is ONNX Runtime's CPU form ({', '.join(facts.cpu_form_ops)}), which TensorRT's ONNX parser does not "
            "import: build the TensorRT form (trtcompress quantize --target tensorrt, or --table to reuse the calibration)"
        )
    notes: list[str] = []
    if facts.opset > version.max_onnx_opset:
        notes.append(f"the model is opset {facts.opset}; TensorRT {version}'s parser is tested up to opset {version.max_onnx_opset} (export with --opset {version.max_onnx_opset})")
    if version.strongly_typed and not config.weak_typing:
        strongly_typed, int8, fp16 = True, False, False
        convert_fp16 = config.fp16 and not facts.has_fp16
    else:
        if config.weak_typing and not version.weakly_typed:
            raise ConfigError(f"TensorRT {version} has no weak typing (removed in 11); drop --weak-typing: precision comes from the ONNX types")
        if config.weak_typing and not version.strongly_typed:
            notes.append(f"TensorRT {version} is always weakly typed; --weak-typing changes nothing")
        if version.weak_typing_deprecated:
            notes.append(f"weak typing is deprecated in TensorRT {version}; strong typing (the default) builds the same Q/DQ model")
        strongly_typed, convert_fp16 = False, False
        int8 = facts.has_qdq  # a Q/DQ network needs the INT8 flag when weakly typed
        fp16 = config.fp16 or facts.has_fp16
    if config.fp16 and facts.has_fp16 and strongly_typed:
        notes.append("the model already carries float16 tensors; it is built as typed, not converted again")

    ready = facts.sparse_layers
    if config.sparse == "on":
        sparse = True
        if not ready:
            notes.append("--sparse on, but no layer follows 2:4 where TensorRT could use it (see 'trtcompress inspect')")
    else:
        sparse = config.sparse == "auto" and bool(ready)
    if sparse and not (facts.has_qdq or facts.has_fp16 or config.fp16):
        notes.append("sparse kernels exist only for FP16 and INT8 layers: an FP32 build will not use them (add --fp16 or quantize first)")

    if config.dla_core is not None and not version.dla:
        raise ConfigError(f"TensorRT {version} has no DLA (DLA is in TensorRT <= 10.7 and again from 11.4.1 on AGX Orin); drop --dla-core")
    python_plugins = [p for p in config.plugins if p.endswith(".py")]
    if python_plugins and not version.python_plugins:
        raise ConfigError(f"Python plugins ({', '.join(python_plugins)}) need TensorRT 10.6 or newer (tensorrt.plugin); TensorRT {version} loads plugin libraries (.so) only")
    refit = config.refit_mode
    if refit != "off" and not version.weight_stripping:
        raise ConfigError(
            f"TensorRT {version} has no weight-stripped or refit-from-ONNX engines (STRIP_PLAN, REFIT_IDENTICAL and the ONNX "
            "parser's refitter came in 10.0): drop --strip-weights/--refit, or build on TensorRT 10 or newer"
        )
    if refit == "any":
        # TensorRT's "Refitting an Engine" guide (11.3.0): REFIT may drop a GEMM bias (wrong outputs
        # even without a refit); REFIT_IDENTICAL does not reproduce it
        notes.append("--refit any sets REFIT, which TensorRT's refit guide (11.3) says may drop a GEMM bias: check the refitted engine with 'trtcompress compare MODEL.onnx ENGINE'")
    profiles = config.profiles() or _default_profile(facts, config)
    _check_profiles(facts, profiles)
    return BuildPlan(
        version=str(version),
        strongly_typed=strongly_typed,
        int8=int8,
        fp16=fp16,
        convert_fp16=convert_fp16,
        sparse_weights=sparse,
        profiles=profiles,
        workspace_mib=config.workspace_mib,
        builder_optimization_level=config.builder_optimization_level,
        timing_cache=config.timing_cache,
        dla_core=config.dla_core,
        gpu_fallback=config.gpu_fallback,
        version_compatible=config.version_compatible,
        hardware_compatibility=config.hardware_compatibility,
        plugins=tuple(config.plugins),
        sparse_layers=ready,
        notes=tuple(notes),
        qdq=facts.has_qdq,
        strip_weights=config.strip_weights,
        refit=refit,
    )
