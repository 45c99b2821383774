"""The trtexec command line equivalent to a :class:`BuildPlan` (many Jetson users build with trtexec).

Flag spellings are trtexec's (its ``--help``, TensorRT 8.6 to 11): ``--stronglyTyped`` (9.0+),
``--sparsity=enable``, ``--memPoolSize=workspace:<MiB>`` (MiB is the default unit),
``--builderOptimizationLevel``, ``--useDLACore`` with ``--allowGPUFallback``, ``--timingCacheFile``,
``--versionCompatible``, ``--hardwareCompatibilityLevel=ampere+``, ``--stripWeights``/``--refit`` (10.0+), and ``--staticPlugins`` on
10.x/11.x where ``--plugins`` is deprecated (``TrtVersion.trtexec_plugin_flag``). Python plugins
have no trtexec flag; they are listed in a comment.
"""
from __future__ import annotations

import shlex

from .plan import BuildPlan
from .plugins import split_plugins
from .version import parse_version

__all__ = ["trtexec_args", "trtexec_command", "fp16_onnx_path", "refit_onnx_path", "parsed_onnx_path"]


def fp16_onnx_path(onnx_path: str) -> str:
    """Where the float16 ONNX of a strongly typed ``--fp16`` build is written (beside the source)."""
    return f"{onnx_path[:-5] if onnx_path.endswith('.onnx') else onnx_path}.fp16.onnx"


def refit_onnx_path(onnx_path: str) -> str:
    """Where the dense ONNX a refittable build parses is written (beside the source; ``trt/weights.py``)."""
    return f"{onnx_path[:-5] if onnx_path.endswith('.onnx') else onnx_path}.refit.onnx"


def parsed_onnx_path(plan: BuildPlan, onnx_path: str) -> str:
    """The ONNX file the build parses: the dense form for a refittable build, the float16 form for a
    strongly typed ``--fp16`` build, else the model itself (:func:`..build.parsed_model` makes them)."""
    if plan.refit != "off":
        return refit_onnx_path(onnx_path)
    return fp16_onnx_path(onnx_path) if plan.convert_fp16 else onnx_path


def _shapes(profile, which: int) -> str:
    return ",".join(f"{name}:{'x'.join(str(d) for d in dims[which])}" for name, *dims in profile)


def trtexec_args(plan: BuildPlan, onnx_path: str, engine_path: str) -> list[str]:
    version = parse_version(plan.version)
    args = ["trtexec", f"--onnx={parsed_onnx_path(plan, onnx_path)}", f"--saveEngine={engine_path}"]
    if plan.strongly_typed:
        args.append("--stronglyTyped")
    if plan.int8:
        args.append("--int8")
    if plan.fp16:
        args.append("--fp16")
    if plan.sparse_weights:
        args.append("--sparsity=enable")
    for i, profile in enumerate(plan.profiles):
        if len(plan.profiles) > 1:
            args.append(f"--profile={i}")
        args += [f"--minShapes={_shapes(profile, 0)}", f"--optShapes={_shapes(profile, 1)}", f"--maxShapes={_shapes(profile, 2)}"]
    if plan.workspace_mib is not None:
        args.append(f"--memPoolSize=workspace:{plan.workspace_mib}")
    if plan.builder_optimization_level is not None:
        args.append(f"--builderOptimizationLevel={plan.builder_optimization_level}")
    if plan.dla_core is not None:
        args.append(f"--useDLACore={plan.dla_core}")
        if plan.gpu_fallback:
            args.append("--allowGPUFallback")
    if plan.timing_cache:
        args.append(f"--timingCacheFile={plan.timing_cache}")
    if plan.version_compatible:
        args.append("--versionCompatible")
    if plan.hardware_compatibility != "none":
        args.append(f"--hardwareCompatibilityLevel={plan.hardware_compatibility}")
    # --stripWeights alone is STRIP_PLAN with REFIT_IDENTICAL; with --refit it is STRIP_PLAN with REFIT
    # (trtexec --help and samples/common/sampleEngines.cpp, v10.3.0)
    if plan.strip_weights:
        args.append("--stripWeights")
    if plan.refit == "any":
        args.append("--refit")
    libraries, _ = split_plugins(plan.plugins)
    args += [f"{version.trtexec_plugin_flag}={lib}" for lib in libraries]
    args.append("--profilingVerbosity=detailed")
    return args


def trtexec_command(plan: BuildPlan, onnx_path: str, engine_path: str) -> str:
    line = shlex.join(trtexec_args(plan, onnx_path, engine_path))
    _, python_plugins = split_plugins(plan.plugins)
    notes = []
    if plan.refit != "off":
        notes.append(f"# a refittable build parses the dense form {refit_onnx_path(onnx_path)} (shared weights decoded{', float16' if plan.convert_fp16 else ''}; "
                     "'trtcompress build --dry-run' writes it); 'trtcompress refit' needs the sidecar 'trtcompress build' writes")
    elif plan.convert_fp16:
        notes.append(f"# strongly typed FP16 builds the float16 ONNX {fp16_onnx_path(onnx_path)} ('trtcompress build --dry-run' writes it)")
    if python_plugins:
        notes.append(f"# Python plugins have no trtexec flag; import them in a Python build instead: {', '.join(python_plugins)}")
    return "\n".join([*notes, line])
