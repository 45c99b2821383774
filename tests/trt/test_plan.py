"""The version table as a pure mapping: (model facts, BuildConfig, TrtVersion) -> BuildPlan."""
from __future__ import annotations

import pytest

from trt_graphs import conv_net, seq_model
from trtcompress.errors import ConfigError
from trtcompress.trt.config import BuildConfig, parse_profile
from trtcompress.trt.plan import make_plan, model_facts
from trtcompress.trt.version import parse_version

V86, V103, V1013, V11 = (parse_version(v) for v in ("8.6.1", "10.3.0", "10.13.0", "11.0"))


def plan(model, version, **kw):
    return make_plan(model_facts(model), BuildConfig(**kw), version)


def test_profile_syntax_is_trtexecs():
    assert parse_profile("x:1x3x224x224,x:8x3x224x224,x:32x3x224x224") == (("x", (1, 3, 224, 224), (8, 3, 224, 224), (32, 3, 224, 224)),)
    assert parse_profile("x:1x3,y:2x5,x:4x3,x:8x3") == (("x", (1, 3), (4, 3), (8, 3)), ("y", (2, 5), (2, 5), (2, 5)))


@pytest.mark.parametrize("text, why", [
    ("x:1x3,x:8x3", "appears 2 times"),
    ("x:8x3,x:1x3,x:32x3", "min <= opt <= max"),
    ("x:1x3,x:8x3x1,x:32x3", "same rank"),
    ("x1x3", "NAME:DIMS"),
    ("x:1xax3", "1x3x224x224"),
    ("x:0x3", ">= 1"),
])
def test_bad_profiles_say_what_is_wrong(text, why):
    with pytest.raises(ConfigError, match=why):
        parse_profile(text)


def test_qdq_model_per_version():
    m = conv_net(qdq=True)
    p86, p103, p1013, p11 = (plan(m, v) for v in (V86, V103, V1013, V11))
    # 8.6: weakly typed, a Q/DQ network needs the INT8 flag
    assert (p86.strongly_typed, p86.int8, p86.fp16) == (False, True, False)
    # 10.x and 11.x: strongly typed, no precision flags, precision from the Q/DQ
    for p in (p103, p1013, p11):
        assert (p.strongly_typed, p.int8, p.fp16, p.convert_fp16) == (True, False, False, False)
    # weak typing only when asked, and only where it exists
    w = plan(m, V103, weak_typing=True)
    assert (w.strongly_typed, w.int8) == (False, True) and not w.notes
    assert any("deprecated" in n for n in plan(m, V1013, weak_typing=True).notes)
    with pytest.raises(ConfigError, match="no weak typing"):
        plan(m, V11, weak_typing=True)


def test_fp16_is_a_flag_when_weak_and_an_onnx_conversion_when_strong():
    m = conv_net()
    p86 = plan(m, V86, fp16=True)
    assert (p86.fp16, p86.convert_fp16, p86.int8) == (True, False, False)
    for v in (V103, V1013, V11):
        p = plan(m, v, fp16=True)
        assert (p.strongly_typed, p.fp16, p.convert_fp16) == (True, False, True)
        assert p.precisions == ("fp32", "fp16")
    w = plan(m, V103, fp16=True, weak_typing=True)
    assert (w.fp16, w.convert_fp16) == (True, False)
    assert plan(m, V103).precisions == ("fp32",)


def test_int8_fp16_on_86():
    p = plan(conv_net(qdq=True), V86, fp16=True)
    assert (p.int8, p.fp16) == (True, True) and p.precisions == ("fp32", "fp16", "int8")


def test_sparse_weights_follow_the_2to4_analysis():
    dense, sparse = conv_net(), conv_net(sparse=True, qdq=True)
    assert plan(dense, V103).sparse_weights is False
    p = plan(sparse, V103)
    assert p.sparse_weights is True and p.sparse_layers == ("conv2",)
    assert plan(sparse, V103, sparse="off").sparse_weights is False
    on = plan(dense, V103, sparse="on")
    assert on.sparse_weights and any("no layer follows 2:4" in n for n in on.notes)
    # FP32 2:4 model: flag set, with the note that FP32 layers have no sparse kernels
    fp32 = plan(conv_net(sparse=True), V86)
    assert fp32.sparse_weights and any("only for FP16 and INT8" in n for n in fp32.notes)


def test_default_profile_from_dynamic_batch():
    p = plan(conv_net(), V103)
    assert p.profiles == ((("x", (1, 3, 16, 16), (8, 3, 16, 16), (32, 3, 16, 16)),),)
    assert plan(conv_net(), V103, opt_batch=4, max_batch=64).profiles[0][0][2:] == ((4, 3, 16, 16), (64, 3, 16, 16))
    assert plan(conv_net(dynamic=False), V103).profiles == ()


def test_several_profiles_and_their_checks(tmp_path):
    m = conv_net()
    p = plan(m, V103, shapes=("x:1x3x16x16,x:1x3x16x16,x:4x3x16x16", "x:8x3x16x16,x:16x3x16x16,x:64x3x16x16"))
    assert len(p.profiles) == 2 and p.profiles[1][0][3] == (64, 3, 16, 16)
    with pytest.raises(ConfigError, match="does not have"):
        plan(m, V103, shapes=("y:1x3x16x16",))
    with pytest.raises(ConfigError, match="fixed dimensions"):
        plan(m, V103, shapes=("x:1x3x32x32,x:1x3x32x32,x:4x3x32x32",))
    seq = model_facts(__import__("onnx").load(seq_model(tmp_path / "seq.onnx")))
    with pytest.raises(ConfigError, match="--shapes x:MIN,x:OPT,x:MAX"):
        make_plan(seq, BuildConfig(), V103)
    ok = make_plan(seq, BuildConfig(shapes=("x:1x1x16,x:4x64x16,x:8x128x16",)), V103)
    assert ok.profiles[0][0][3] == (8, 128, 16)


def test_dla_and_options():
    m = conv_net(qdq=True)
    p = plan(m, V86, dla_core=1, workspace_mib=512, builder_optimization_level=5, timing_cache="t.cache")
    assert (p.dla_core, p.gpu_fallback, p.workspace_mib, p.builder_optimization_level, p.timing_cache) == (1, True, 512, 5, "t.cache")
    with pytest.raises(ConfigError, match="no DLA"):
        plan(m, V1013, dla_core=0)
    assert plan(m, parse_version("11.4.1"), dla_core=0).dla_core == 0
    with pytest.raises(ConfigError, match="cannot be version- or hardware-compatible"):
        BuildConfig(dla_core=0, version_compatible=True)
    with pytest.raises(ConfigError, match="hardware compatibility"):
        BuildConfig(hardware_compatibility="turing+")


def test_opset_above_the_parser_is_noted():
    assert any("opset 18" in n for n in plan(conv_net(opset=18), V86).notes)
    assert not plan(conv_net(opset=18), V103).notes


def test_config_round_trips_through_json():
    c = BuildConfig(fp16=True, shapes=("x:1x3x16x16,x:8x3x16x16,x:32x3x16x16",), plugins=("a.so",))
    assert BuildConfig.from_json(c.to_json()) == c


def test_python_plugins_need_tensorrt_10_6():
    m = conv_net()
    with pytest.raises(ConfigError, match="need TensorRT 10.6"):
        plan(m, V103, plugins=("plugins/scaled_tanh/trt_plugin.py",))
    assert plan(m, V1013, plugins=("x/trt_plugin.py", "libx.so")).plugins == ("x/trt_plugin.py", "libx.so")


def test_the_cpu_form_is_refused_and_qdq_expects_int8_when_strongly_typed(tmp_path):
    """ONNX Runtime's operator form (QLinearConv, ...) has no TensorRT importer: refused in one line
    for every version; a Q/DQ model built strongly typed still expects INT8 layers (the report's
    'requested precision not used' warning depends on it)."""
    import numpy as np

    from trtcompress import zoo
    from trtcompress.errors import ModelError
    from trtcompress.model_io import load_model
    from trtcompress.stages.quantize import QuantizeConfig, quantize
    from trtcompress.trt.config import BuildConfig
    from trtcompress.trt.plan import make_plan, model_facts
    from trtcompress.trt.version import parse_version

    np.savez(tmp_path / "0.npz", x=zoo.fashion_mnist("train", limit=16)[0])
    model = load_model(zoo.onnx_path("fashion_cnn"))
    forms = {t: quantize(model, QuantizeConfig(calib=str(tmp_path), target=t, sensitivity_samples=0, progress=False)).model for t in ("tensorrt", "cpu")}
    for v in ("8.6", "10.3", "11.0"):
        with pytest.raises(ModelError, match="CPU form"):
            make_plan(model_facts(forms["cpu"]), BuildConfig(), parse_version(v))
        plan = make_plan(model_facts(forms["tensorrt"]), BuildConfig(), parse_version(v))
        assert "int8" in plan.precisions and plan.int8 == (v == "8.6")
