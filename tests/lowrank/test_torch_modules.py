"""Factorised torch modules: exact at full rank, same rank rules, export to matching ONNX."""
from __future__ import annotations

import copy

import numpy as np
import pytest

torch = pytest.importorskip("torch")
nn = torch.nn

from trtcompress.errors import ConfigError  # noqa: E402
from trtcompress.lowrank import LowRankConfig  # noqa: E402
from trtcompress.lowrank.svd import Spectrum  # noqa: E402
from trtcompress.lowrank.torch_modules import FactorizedConv2d, FactorizedLinear, factorize_module  # noqa: E402


def _net():
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 16, 3, padding=1), nn.ReLU(),
        nn.Conv2d(16, 32, 3, stride=2, padding=1, dilation=1), nn.ReLU(),
        nn.Conv2d(32, 32, 3, padding=1, groups=32),
        nn.Flatten(), nn.Linear(32 * 4 * 4, 64), nn.ReLU(), nn.Linear(64, 10),
    ).eval()


def _factors(weight, r=None):
    sp = Spectrum(weight.detach().double().reshape(weight.shape[0], -1).numpy(), "exact")
    return sp.factors(r or sp.full_rank)


def test_full_rank_linear_and_conv_are_exact():
    torch.manual_seed(1)
    lin = nn.Linear(20, 12)
    f = FactorizedLinear.from_linear(lin, *_factors(lin.weight))
    x = torch.randn(5, 20)
    torch.testing.assert_close(f(x), lin(x), rtol=1e-5, atol=1e-5)
    conv = nn.Conv2d(4, 6, (3, 2), stride=(2, 1), padding=(1, 0), dilation=(1, 2))
    fc = FactorizedConv2d.from_conv(conv, *_factors(conv.weight))
    x = torch.randn(2, 4, 9, 9)
    torch.testing.assert_close(fc(x), conv(x), rtol=1e-5, atol=1e-5)
    assert fc.first.stride == conv.stride and fc.first.dilation == conv.dilation and fc.second.kernel_size == (1, 1)


def test_flops_rule_replaces_modules_and_skips_grouped():
    net = _net()
    x = torch.randn(2, 3, 8, 8)
    rep = factorize_module(net, LowRankConfig(rule="flops", flop_fraction=0.5), example_inputs=x).to_dict()
    assert rep["factorised_flop_fraction"] <= 0.5
    assert isinstance(net[0], FactorizedConv2d) and isinstance(net[6], FactorizedLinear)
    assert isinstance(net[4], nn.Conv2d)
    assert "groups=32" in {s["name"]: s["reason"] for s in rep["skipped"]}["4"]
    by = {l["name"]: l for l in rep["layers"]}
    assert by["2"]["flops_before"] == 2 * 32 * 16 * 9 * 4 * 4  # stride 2: 4x4 outputs


def test_flops_rule_needs_example_inputs_for_convs():
    with pytest.raises(ConfigError):
        factorize_module(_net(), LowRankConfig(rule="flops"))


def test_error_rule_on_calibration_batches():
    net = _net()
    dense = copy.deepcopy(net)
    batches = [torch.randn(4, 3, 8, 8) for _ in range(2)]
    rep = factorize_module(net, LowRankConfig(rule="error", error=0.3), calibration=batches).to_dict()
    assert rep["layers"]
    for l in rep["layers"]:
        assert l["output_error"] <= 0.3
    first = rep["layers"][0]
    if first["name"] == "0":  # first layer's error measured directly
        a, b = dense[0](batches[0]), net[0](batches[0])
        assert float((a - b).norm() / a.norm()) <= 0.3 + 1e-3


def test_factorised_module_exports_to_matching_onnx(tmp_path):
    ort = pytest.importorskip("onnxruntime")
    net = _net()
    x = torch.randn(2, 3, 8, 8)
    factorize_module(net, LowRankConfig(rule="flops", flop_fraction=0.5), example_inputs=x)
    from trtcompress.finetune.export import export_student

    path = export_student(net, x[:1], tmp_path / "f.onnx")
    y = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, {"x": x.numpy()})[0]
    np.testing.assert_allclose(y, net(x).detach().numpy(), rtol=1e-4, atol=1e-5)
    import onnx

    ops = [n.op_type for n in onnx.load(str(path)).graph.node]
    assert ops.count("Conv") == 5  # two factorised convs become four, the depthwise one stays
