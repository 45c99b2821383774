"""A :class:`BuildPlan` -> Polygraphy's TensorRT loaders: the only place that constructs them.

Polygraphy's loaders are lazy: constructing them touches no TensorRT, so everything here runs
(and is tested) without it. Settings whose value is a TensorRT enum (workspace pool, hardware
compatibility level, a DLA core other than Polygraphy's 0) are applied by a
``PostprocessConfig`` step that resolves the enum when the build runs; :func:`enum_settings`
lists them as plain data.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Callable

from .config import HARDWARE_COMPATIBILITY
from .plan import BuildPlan

__all__ = ["BuildLoaders", "build_loaders", "create_config_kwargs", "enum_settings", "engine_from_path"]


@dataclasses.dataclass
class BuildLoaders:
    network: Any  # NetworkFromOnnxPath (wrapped in LoadPlugins when plugins are given)
    config: Any  # CreateConfig, wrapped in PostprocessConfig when an enum setting is needed
    engine: Any  # EngineFromNetwork


def create_config_kwargs(plan: BuildPlan) -> dict[str, Any]:
    """The arguments :class:`polygraphy.backend.trt.CreateConfig` gets for ``plan``."""
    from polygraphy.backend.trt import Profile

    profiles = []
    for p in plan.profiles:
        prof = Profile()
        for name, lo, opt, hi in p:
            prof.add(name, min=lo, opt=opt, max=hi)
        profiles.append(prof)
    kwargs: dict[str, Any] = {
        "profiles": profiles or None,
        "sparse_weights": plan.sparse_weights,
        "load_timing_cache": plan.timing_cache,
        "builder_optimization_level": plan.builder_optimization_level,
        "version_compatible": plan.version_compatible or None,
        # Polygraphy 0.53.6 backend/trt/config.py: strip_plan -> BuilderFlag.STRIP_PLAN, refittable -> REFIT;
        # it has no REFIT_IDENTICAL argument, so enum_settings sets that one
        "strip_plan": plan.strip_weights or None,
        "refittable": plan.refit == "any" or None,
        # profiling_verbosity: Polygraphy's default is DETAILED, which the engine inspector needs
    }
    if not plan.strongly_typed:  # 11.x has no flags and Polygraphy refuses them there
        kwargs["int8"] = plan.int8
        kwargs["fp16"] = plan.fp16
    if plan.dla_core is not None:
        kwargs["use_dla"] = True
        kwargs["allow_gpu_fallback"] = plan.gpu_fallback
    return kwargs


def enum_settings(plan: BuildPlan) -> list[tuple[str, str, str, Any]]:
    """``(IBuilderConfig attribute or method, trt enum, member, value)`` applied at build time."""
    out: list[tuple[str, str, str, Any]] = []
    if plan.workspace_mib is not None:
        out.append(("set_memory_pool_limit", "MemoryPoolType", "WORKSPACE", plan.workspace_mib << 20))
    if plan.hardware_compatibility != "none":
        out.append(("hardware_compatibility_level", "HardwareCompatibilityLevel", HARDWARE_COMPATIBILITY[plan.hardware_compatibility], None))
    if plan.dla_core:  # Polygraphy selects core 0 itself
        out.append(("DLA_core", "", "", plan.dla_core))
    if plan.refit == "identical":
        out.append(("set_flag", "BuilderFlag", "REFIT_IDENTICAL", None))
    return out


def _apply(settings: list[tuple[str, str, str, Any]]) -> Callable[[Any, Any, Any], None]:
    def apply(builder, network, config) -> None:
        import tensorrt as trt

        for attr, enum, member, value in settings:
            if attr == "set_memory_pool_limit":
                config.set_memory_pool_limit(getattr(getattr(trt, enum), member), value)
            elif attr == "set_flag":
                config.set_flag(getattr(getattr(trt, enum), member))
            elif enum:
                setattr(config, attr, getattr(getattr(trt, enum), member))
            else:
                setattr(config, attr, value)

    return apply


def build_loaders(plan: BuildPlan, onnx_path: str, save_timing_cache: str | None = None) -> BuildLoaders:
    """Loaders that parse ``onnx_path`` and build ``plan`` when the engine loader is called."""
    from polygraphy.backend.trt import CreateConfig, EngineFromNetwork, LoadPlugins, NetworkFromOnnxPath, PostprocessConfig

    from .plugins import split_plugins

    libraries, python_plugins = split_plugins(plan.plugins)
    network = NetworkFromOnnxPath(str(onnx_path), strongly_typed=plan.strongly_typed or None)
    if libraries:
        network = LoadPlugins(plugins=list(libraries), obj=network)
    config: Any = CreateConfig(**create_config_kwargs(plan))
    settings = enum_settings(plan)
    if settings:
        config = PostprocessConfig(config, _apply(settings))
    engine = EngineFromNetwork(network, config=config, save_timing_cache=save_timing_cache)
    return BuildLoaders(network, config, engine)


def engine_from_path(path: str, plugins: tuple[str, ...] = ()) -> Any:
    """Polygraphy's ``EngineFromPath`` (plugin registry and host-code permission handled there),
    after loading the plugin libraries the engine needs."""
    from polygraphy.backend.trt import EngineFromPath

    from .plugins import load_plugins

    load_plugins(plugins)
    return EngineFromPath(str(path))
