"""Plan -> the real Polygraphy loaders (constructible without TensorRT), and -> the trtexec line."""
from __future__ import annotations

import shlex

import pytest
from polygraphy.backend.trt import CreateConfig, EngineFromNetwork, LoadPlugins, NetworkFromOnnxPath, PostprocessConfig

from trt_graphs import conv_net
from trtcompress.trt.config import BuildConfig
from trtcompress.trt.loaders import build_loaders, create_config_kwargs, enum_settings
from trtcompress.trt.plan import make_plan, model_facts
from trtcompress.trt.trtexec import trtexec_args
from trtcompress.trt.version import parse_version


def _plan(version, model=None, **kw):
    return make_plan(model_facts(model or conv_net(qdq=True)), BuildConfig(**kw), parse_version(version))


def test_86_qdq_loaders_carry_int8_and_the_profile(tmp_path):
    plan = _plan("8.6.1", fp16=True)
    loaders = build_loaders(plan, str(tmp_path / "m.onnx"), save_timing_cache=str(tmp_path / "t.cache"))
    assert isinstance(loaders.network, NetworkFromOnnxPath) and loaders.network.strongly_typed is False
    assert isinstance(loaders.config, CreateConfig)
    assert (loaders.config.int8, loaders.config.fp16, loaders.config.sparse_weights) == (True, True, False)
    (profile,) = loaders.config.profiles
    assert profile["x"].min == (1, 3, 16, 16) and profile["x"].opt == (8, 3, 16, 16) and profile["x"].max == (32, 3, 16, 16)
    assert isinstance(loaders.engine, EngineFromNetwork) and loaders.engine.timing_cache_path == str(tmp_path / "t.cache")


@pytest.mark.parametrize("version", ["10.3.0", "10.13.0", "11.0"])
def test_strongly_typed_loaders_pass_no_precision_flag(version, tmp_path):
    plan = _plan(version, model=conv_net(sparse=True, qdq=True))
    loaders = build_loaders(plan, str(tmp_path / "m.onnx"))
    assert loaders.network.strongly_typed is True
    kwargs = create_config_kwargs(plan)
    assert "int8" not in kwargs and "fp16" not in kwargs  # Polygraphy refuses int8=True on TensorRT 11
    assert loaders.config.int8 is False and loaders.config.fp16 is False and loaders.config.sparse_weights is True


def test_enum_settings_are_applied_by_a_postprocess_step(tmp_path):
    plan = _plan("8.6.1", workspace_mib=256, dla_core=1, timing_cache="c.cache", builder_optimization_level=4)
    assert enum_settings(plan) == [("set_memory_pool_limit", "MemoryPoolType", "WORKSPACE", 256 << 20), ("DLA_core", "", "", 1)]
    loaders = build_loaders(plan, "m.onnx")
    assert isinstance(loaders.config, PostprocessConfig)
    inner = loaders.config._config
    assert (inner.use_dla, inner.allow_gpu_fallback, inner.builder_optimization_level, inner.timing_cache_path) == (True, True, 4, "c.cache")
    hw = _plan("10.3.0", hardware_compatibility="ampere+", version_compatible=True)
    assert enum_settings(hw) == [("hardware_compatibility_level", "HardwareCompatibilityLevel", "AMPERE_PLUS", None)]
    assert build_loaders(hw, "m.onnx").config._config.version_compatible is True


def test_plugin_libraries_wrap_the_network(tmp_path):
    lib = tmp_path / "libmyplugin.so"
    lib.write_bytes(b"")
    plan = _plan("10.3.0", plugins=(str(lib),))
    loaders = build_loaders(plan, "m.onnx")
    assert isinstance(loaders.network, LoadPlugins) and loaders.network.plugins == [str(lib)]


def test_trtexec_line_per_version(tmp_path):
    lib = str(tmp_path / "libp.so")
    common = dict(workspace_mib=1024, builder_optimization_level=5, timing_cache="t.cache", plugins=(lib,))
    a86 = trtexec_args(_plan("8.6.1", model=conv_net(sparse=True, qdq=True), fp16=True, dla_core=0, **common), "m.onnx", "m.engine")
    assert a86 == [
        "trtexec", "--onnx=m.onnx", "--saveEngine=m.engine", "--int8", "--fp16", "--sparsity=enable",
        "--minShapes=x:1x3x16x16", "--optShapes=x:8x3x16x16", "--maxShapes=x:32x3x16x16",
        "--memPoolSize=workspace:1024", "--builderOptimizationLevel=5", "--useDLACore=0", "--allowGPUFallback",
        "--timingCacheFile=t.cache", f"--plugins={lib}", "--profilingVerbosity=detailed",
    ]
    a10 = trtexec_args(_plan("10.13.0", model=conv_net(), fp16=True, version_compatible=True, hardware_compatibility="ampere+", **common), "m.onnx", "m.engine")
    assert a10[:4] == ["trtexec", "--onnx=m.fp16.onnx", "--saveEngine=m.engine", "--stronglyTyped"]
    assert "--fp16" not in a10 and "--int8" not in a10
    assert {"--versionCompatible", "--hardwareCompatibilityLevel=ampere+", f"--staticPlugins={lib}"} <= set(a10)
    two = _plan("11.0", shapes=("x:1x3x16x16,x:2x3x16x16,x:4x3x16x16", "x:8x3x16x16,x:16x3x16x16,x:32x3x16x16"))
    line = shlex.join(trtexec_args(two, "m.onnx", "m.engine"))
    assert "--profile=0 --minShapes=x:1x3x16x16 --optShapes=x:2x3x16x16 --maxShapes=x:4x3x16x16 --profile=1 --minShapes=x:8x3x16x16" in line
