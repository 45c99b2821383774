"""Property-based tests (hypothesis) of the invariants the quantizer and the configs rest on:
Q/DQ rounding bounds (the tool's weight rule and ONNX Runtime's Q/DQ with the tool's activation
scales), exact histogram merges, calibration cache and config round trips. 2:4 mask properties
live in tests/sparsity/test_masks.py."""
from __future__ import annotations

import dataclasses
import functools
import typing

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from trtcompress.errors import ConfigError, DataError
from trtcompress.quant.cache import format_cache, parse_cache
from trtcompress.quant.histogram import AbsHistogram
from trtcompress.quant.scales import activation_scale, quantize_weight, scales_from_amax, weight_amax
from trtcompress.quant.table import CalibrationTable

SETTINGS = settings(max_examples=60, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])

finite32 = st.floats(-1e4, 1e4, width=32, allow_nan=False, allow_infinity=False)
amaxes = st.floats(0.0009765625, 1024.0, width=32)


def _check_qdq(x: np.ndarray, dq: np.ndarray, scale: np.ndarray, lo: int) -> None:
    """Inside the clip range the error is at most half a step; outside, values clamp to the ends."""
    s = np.broadcast_to(scale, x.shape).astype(np.float64)
    x64, dq64 = x.astype(np.float64), dq.astype(np.float64)
    inside = (x64 <= 127 * s) & (x64 >= lo * s)
    # float32 division and rounding: half a step, plus a few ulps of the value
    slack = s / 2 * (1 + 1e-5) + np.abs(x64) * 1e-6
    assert np.all(np.abs(x64 - dq64)[inside] <= slack[inside])
    assert np.all(dq64[x64 > 127 * s] == np.float32(127 * s)[x64 > 127 * s].astype(np.float64)) or np.allclose(dq64[x64 > 127 * s], (127 * s)[x64 > 127 * s], rtol=1e-6)
    below = x64 < lo * s
    assert np.allclose(dq64[below], (lo * s)[below], rtol=1e-6)


@SETTINGS
@given(arrays(np.float32, st.tuples(st.integers(1, 6), st.integers(1, 9)), elements=finite32), st.one_of(st.none(), st.just(0)), st.floats(0.1, 2.0))
def test_weight_qdq_error_is_at_most_half_a_step(w, axis, shrink):
    """The tool's weight rule: per-channel or per-tensor scales from max |w| (shrunk, so some
    values lie past the clip range and must clamp to +-127)."""
    amax = weight_amax(w, axis) * np.float32(shrink)
    scale = scales_from_amax(amax)
    q = quantize_weight(w, scale, axis)
    assert q.dtype == np.int8 and q.min() >= -127 and q.max() <= 127
    s = scale.reshape(-1, 1) if axis == 0 else scale
    _check_qdq(w, q.astype(np.float32) * s, s, -127)


@functools.lru_cache(maxsize=1)
def _ort_qdq():
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper

    g = helper.make_graph(
        [helper.make_node("QuantizeLinear", ["x", "s", "z"], ["q"]), helper.make_node("DequantizeLinear", ["q", "s", "z"], ["y"])],
        "qdq", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n"]), helper.make_tensor_value_info("s", TensorProto.FLOAT, [])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n"])], [numpy_helper.from_array(np.int8(0), "z")],
    )
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    return ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"])


@SETTINGS
@given(arrays(np.float32, st.integers(1, 64), elements=finite32), amaxes)
def test_activation_qdq_in_onnxruntime_is_within_half_a_step(x, amax):
    """An activation Q/DQ pair with the scale the tool writes, run by ONNX Runtime: int8 in
    [-128, 127], so the clip range is [-128 s, 127 s]."""
    s = activation_scale(CalibrationTable({"t": float(amax)}, "max"), "t")
    (y,) = _ort_qdq().run(None, {"x": x, "s": np.asarray(s, np.float32)})
    _check_qdq(x, y, np.float32(s), -128)


@SETTINGS
@given(st.floats(-1.0, 1e3).filter(lambda a: not 0 <= a), )
def test_negative_or_nonfinite_ranges_are_refused(amax):
    with pytest.raises(DataError):
        activation_scale(CalibrationTable({"t": amax}, "max"), "t")


# -- histograms ---------------------------------------------------------------------------------

shard = arrays(np.float32, st.integers(0, 200), elements=st.one_of(
    st.floats(-1e6, 1e6, width=32), st.sampled_from([0.0, -0.0, float("nan"), float("inf"), 1e-30])))


@SETTINGS
@given(st.lists(shard, min_size=1, max_size=5), st.randoms(use_true_random=False), st.sampled_from([64, 2048]))
def test_histogram_of_shards_merges_to_one_pass_in_any_order(shards, rnd, bins):
    whole = AbsHistogram(bins=bins)
    whole.add(np.concatenate(shards) if shards else np.zeros(0, np.float32))
    parts = []
    for s in shards:
        h = AbsHistogram(bins=bins)
        h.add(s)
        parts.append(h)
    rnd.shuffle(parts)
    merged = functools.reduce(AbsHistogram.merge, parts)
    assert merged == whole
    # and as a tree rather than a chain
    if len(parts) >= 3:
        assert parts[0].merge(parts[1].merge(parts[2])).merge(functools.reduce(AbsHistogram.merge, parts[3:], AbsHistogram(bins=bins))) == whole


# -- calibration cache --------------------------------------------------------------------------

names = st.text(st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=30)


@SETTINGS
@given(st.dictionaries(names, st.floats(1e-6, 1e6), min_size=1, max_size=8), st.sampled_from(["8.6.1", "10.3.0", "10.8.0"]))
def test_cache_round_trip_or_a_clear_refusal(amax, version):
    table = CalibrationTable(amax, "entropy")
    try:
        text = format_cache(table, version)
    except DataError:
        # only names a line-based file cannot hold are refused
        assert any(len(f"a{n}b".splitlines()) > 1 for n in amax)
        return
    back = parse_cache(text)
    assert list(back.amax) == list(amax)
    for k, v in amax.items():
        assert np.float32(back.amax[k] / 127) == np.float32(np.float32(v) / np.float32(127)) or np.isclose(back.amax[k], v, rtol=1e-6)
    assert format_cache(back, version) == text


# -- configs and recipes ------------------------------------------------------------------------

def _config_classes():
    import trtcompress.benchmark, trtcompress.comparison, trtcompress.data.preprocess, trtcompress.finetune.config  # noqa: E401,F401
    import trtcompress.job, trtcompress.lowrank.config, trtcompress.runners.registry, trtcompress.stages.quantize  # noqa: E401,F401
    import trtcompress.stages.sparsify, trtcompress.torch_export.config  # noqa: E401,F401
    from trtcompress.config import Config

    seen, todo = [], list(Config.__subclasses__())
    while todo:
        c = todo.pop()
        if c not in seen:
            seen.append(c)
            todo.extend(c.__subclasses__())
    return sorted(seen, key=lambda c: c.__name__)


def _strategy(hint, default):
    """Values of a field's type (a default is always among them)."""
    from trtcompress.config import Config

    origin, args = typing.get_origin(hint), typing.get_args(hint)
    keep = st.just(default) if default is not dataclasses.MISSING else st.nothing()
    if origin is typing.Union or type(hint).__name__ == "UnionType":
        return st.one_of(keep, *[_strategy(a, dataclasses.MISSING) for a in args])
    if origin is typing.Literal:
        return st.sampled_from(args)
    if hint is type(None):
        return st.none()
    if hint is bool:
        return st.booleans()
    if hint is int:
        return st.one_of(keep, st.integers(-3, 300))
    if hint is float:
        return st.one_of(keep, st.floats(-2, 1e4, allow_nan=False))
    if hint is str:
        return st.one_of(keep, st.text(st.characters(min_codepoint=32, max_codepoint=126), max_size=12))
    if origin is tuple:
        item = _strategy(args[0], dataclasses.MISSING) if args else st.integers(1, 8)
        if item.is_empty:  # e.g. a tuple of stage configs: kept as given
            return keep
        return st.one_of(keep, st.lists(item, max_size=4).map(tuple))
    if isinstance(hint, type) and issubclass(hint, Config) and hint is not Config:
        return st.one_of(keep, _config(hint))
    return keep


@st.composite
def _config(draw, cls):
    """A valid ``cls``: its defaults with up to three fields drawn from their types (whole random
    configs are almost never valid, and hypothesis would spend its time rejecting them)."""
    hints = typing.get_type_hints(cls)
    defaults, strategies = {}, {}
    for f in dataclasses.fields(cls):
        default = f.default if f.default is not dataclasses.MISSING else (f.default_factory() if f.default_factory is not dataclasses.MISSING else dataclasses.MISSING)
        strategies[f.name] = _strategy(hints.get(f.name), default)
        if default is not dataclasses.MISSING:
            defaults[f.name] = default
    required = [n for n in strategies if n not in defaults]
    varied = draw(st.sets(st.sampled_from(sorted(strategies)), max_size=3)) | set(required)
    kw = {**defaults, **{n: draw(strategies[n]) for n in sorted(varied)}}
    try:
        return cls(**kw)
    except (ConfigError, ValueError, TypeError):
        assume(False)


@pytest.mark.parametrize("cls", _config_classes(), ids=lambda c: c.__name__)
@settings(max_examples=12, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
@given(data=st.data())
def test_every_config_round_trips_through_json(cls, data):
    cfg = data.draw(_config(cls))
    again = cls.from_json(cfg.to_json())
    assert again == cfg
    assert again.to_dict() == cfg.to_dict()
