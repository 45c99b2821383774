"""Factorised ``nn.Linear`` / ``nn.Conv2d`` and :func:`factorize_module`, which swaps them in place.

Ranks follow the same rules as the ONNX stage (:mod:`.ranks`). A factorised module is two plain
torch layers, so it trains, and exports to ONNX as two MatMul/Gemm or two Conv nodes.
Import this module only where torch is installed (``trtcompress`` itself does not import it).
"""
from __future__ import annotations

import dataclasses
import math
from typing import Any, Iterable

import numpy as np

from .._optional import require
from ..errors import ConfigError
from .config import LowRankConfig
from .ranks import Candidate, choose_ranks, excluded
from .svd import Spectrum

torch = require("torch", "factorised torch modules")
nn = torch.nn
F = torch.nn.functional

__all__ = ["FactorizedLinear", "FactorizedConv2d", "factorize_module", "factorize_to_ranks", "FactorizeReport"]


class FactorizedLinear(nn.Module):
    """``y = second(first(x))``: ``in -> rank`` without bias, then ``rank -> out`` with the bias."""

    def __init__(self, in_features: int, out_features: int, rank: int, bias: bool = True):
        super().__init__()
        self.in_features, self.out_features, self.rank = in_features, out_features, rank
        self.first = nn.Linear(in_features, rank, bias=False)
        self.second = nn.Linear(rank, out_features, bias=bias)

    @classmethod
    def from_linear(cls, layer: "nn.Linear", p: np.ndarray, q: np.ndarray) -> "FactorizedLinear":
        """Build from factors ``p`` (out x r) and ``q`` (r x in) of the layer's weight."""
        m = cls(layer.in_features, layer.out_features, q.shape[0], bias=layer.bias is not None)
        _load(m.first.weight, q, layer.weight)
        _load(m.second.weight, p, layer.weight)
        if layer.bias is not None:
            m.second.bias.data.copy_(layer.bias.data)
        return m.to(layer.weight.device)

    def forward(self, x):
        return self.second(self.first(x))

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, rank={self.rank}"


class FactorizedConv2d(nn.Module):
    """An ``in -> rank`` conv with the original kernel, stride, padding and dilation, then a 1x1
    conv ``rank -> out`` with the bias."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size, rank: int, stride=1, padding=0, dilation=1, bias: bool = True, padding_mode: str = "zeros"):
        super().__init__()
        self.in_channels, self.out_channels, self.rank = in_channels, out_channels, rank
        self.first = nn.Conv2d(in_channels, rank, kernel_size, stride=stride, padding=padding, dilation=dilation, bias=False, padding_mode=padding_mode)
        self.second = nn.Conv2d(rank, out_channels, 1, bias=bias)

    @classmethod
    def from_conv(cls, layer: "nn.Conv2d", p: np.ndarray, q: np.ndarray) -> "FactorizedConv2d":
        r = q.shape[0]
        m = cls(layer.in_channels, layer.out_channels, layer.kernel_size, r, layer.stride, layer.padding, layer.dilation, layer.bias is not None, layer.padding_mode)
        _load(m.first.weight, q.reshape((r,) + tuple(layer.weight.shape[1:])), layer.weight)
        _load(m.second.weight, p.reshape(p.shape + (1, 1)), layer.weight)
        if layer.bias is not None:
            m.second.bias.data.copy_(layer.bias.data)
        return m.to(layer.weight.device)

    def forward(self, x):
        return self.second(self.first(x))

    def extra_repr(self) -> str:
        return f"in_channels={self.in_channels}, out_channels={self.out_channels}, rank={self.rank}"


def _load(param, value: np.ndarray, like) -> None:
    param.data.copy_(torch.as_tensor(np.ascontiguousarray(value), dtype=like.dtype))


@dataclasses.dataclass
class FactorizeReport:
    layers: list[dict[str, Any]]
    skipped: list[dict[str, Any]]

    def to_dict(self) -> dict[str, Any]:
        before = sum(l["flops_before"] for l in self.layers)
        after = sum(l["flops_after"] for l in self.layers)
        return {
            "layers": self.layers,
            "skipped": self.skipped,
            "factorised": len(self.layers),
            "factorised_flops_before": before,
            "factorised_flops_after": after,
            "factorised_flop_fraction": after / before if before else None,
            "params_before": sum(l["params_before"] for l in self.layers),
            "params_after": sum(l["params_after"] for l in self.layers),
        }


def _kind(module) -> str | None:
    if isinstance(module, nn.Linear):
        return "Linear"
    if isinstance(module, nn.Conv2d):
        return "Conv2d"
    return None


_OPS_FOR = {"Linear": ("Gemm", "MatMul"), "Conv2d": ("Conv",)}


def factorize_module(model: "nn.Module", config: LowRankConfig, example_inputs: Any = None, calibration: Iterable[Any] | None = None) -> FactorizeReport:
    """Replace ``nn.Linear`` and ``nn.Conv2d`` (groups=1) layers of ``model`` in place.

    ``example_inputs`` (a tensor or tuple) runs once to learn each layer's output positions for
    FLOP counts (the FLOP rule needs it when the model has convolutions). ``calibration`` (tensors,
    or ``(inputs, labels)`` pairs) is needed by the error rule: each layer's output error is measured
    on the inputs it receives in the dense model.
    """
    named = [(n, m) for n, m in model.named_modules() if _kind(m)]
    skipped: list[dict[str, Any]] = []
    eligible = []
    for name, mod in named:
        kind = _kind(mod)
        if not any(op in config.ops for op in _OPS_FOR[kind]):
            continue
        if excluded(name, config.exclude):
            skipped.append({"name": name, "op": kind, "reason": "excluded by the config"})
            continue
        if kind == "Conv2d" and mod.groups != 1:
            skipped.append({"name": name, "op": kind, "reason": f"grouped convolution (groups={mod.groups}); only groups=1 is factorised"})
            continue
        eligible.append((name, mod))

    if calibration is not None:
        calibration = [_inputs_of(b) for b in calibration]
    if example_inputs is None and calibration:
        example_inputs = calibration[0]
    positions = _positions(model, eligible, example_inputs)
    if config.rule == "flops" and example_inputs is None and any(_kind(m) == "Conv2d" for _, m in eligible):
        raise ConfigError("factorize_module with rule='flops' needs example_inputs to count convolution FLOPs")

    cands = []
    for i, (name, mod) in enumerate(eligible):
        w = mod.weight.detach().cpu().double().numpy()
        mat = w.reshape(w.shape[0], -1)
        spec = Spectrum(mat, config.svd, config.randomized_min_dim, config.oversample, config.power_iters, config.seed + i)
        cands.append(Candidate(name, _kind(mod), mat.shape[0], mat.shape[1], positions.get(name, 1), spec))
    if config.rule == "error":
        if not calibration:
            raise ConfigError("factorize_module with rule='error' needs calibration batches")
        _attach_errors(model, eligible, cands, calibration)

    choices = choose_ranks(cands, config)
    layers = []
    for (name, mod), cand, ch in zip(eligible, cands, choices):
        if ch.rank is None:
            skipped.append({"name": name, "op": cand.op, "reason": ch.reason})
            continue
        p, q = cand.spectrum.factors(ch.rank)
        new = FactorizedLinear.from_linear(mod, p, q) if cand.op == "Linear" else FactorizedConv2d.from_conv(mod, p, q)
        _set_submodule(model, name, new)
        entry = {
            "name": name,
            "op": cand.op,
            "weight_shape": list(mod.weight.shape),
            "rank": ch.rank,
            "full_rank": cand.spectrum.full_rank,
            "break_even_rank": ch.r_max,
            "energy": round(float(ch.energy), 6),
            "params_before": cand.dense_params,
            "params_after": cand.params(ch.rank),
            "flops_before": 2 * cand.dense_macs,
            "flops_after": 2 * cand.macs(ch.rank),
            "svd": cand.spectrum.used,
        }
        if ch.error is not None:
            entry["output_error"] = round(float(ch.error), 6)
        layers.append(entry)
    return FactorizeReport(layers, skipped)


def _inputs_of(batch: Any):
    """A calibration item is a tensor, a tuple of model inputs, or an ``(inputs, labels)`` pair."""
    if isinstance(batch, (tuple, list)) and len(batch) == 2 and torch.is_tensor(batch[1]) and batch[1].dtype in (torch.int64, torch.int32):
        return batch[0]
    return batch


def _call(model, x):
    return model(*x) if isinstance(x, (tuple, list)) else model(x)


def _batch_size(x) -> int:
    first = x[0] if isinstance(x, (tuple, list)) else x
    return int(first.shape[0]) if first.ndim else 1


def _positions(model, eligible, example_inputs) -> dict[str, int]:
    """Output positions per sample of each layer (rows of a Linear, pixels of a Conv)."""
    if example_inputs is None:
        return {}
    out: dict[str, int] = {}
    n = _batch_size(example_inputs)
    hooks = []
    for name, mod in eligible:
        def hook(m, inp, outp, name=name):
            shape = outp.shape
            out[name] = max(1, int(np.prod(shape[2:])) if _kind(m) == "Conv2d" else int(np.prod(shape[:-1])) // n)
        hooks.append(mod.register_forward_hook(hook))
    try:
        with torch.no_grad():
            _call(model, example_inputs)
    finally:
        for h in hooks:
            h.remove()
    return out


def _attach_errors(model, eligible, cands, calibration) -> None:
    seen: dict[str, list] = {name: [] for name, _ in eligible}
    hooks = [mod.register_forward_hook(lambda m, inp, outp, name=name: seen[name].append(inp[0].detach())) for name, mod in eligible]
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            for x in calibration:
                _call(model, x)
    finally:
        for h in hooks:
            h.remove()
        model.train(was_training)
    for (name, mod), cand in zip(eligible, cands):
        cand.error_fn = _error_fn(mod, seen[name], cand)


def _error_fn(mod, xs: list, cand: Candidate):
    apply = (lambda x, w: F.linear(x, w, mod.bias)) if isinstance(mod, nn.Linear) else (lambda x, w: mod._conv_forward(x, w, mod.bias))
    with torch.no_grad():
        ys = [apply(x, mod.weight).double() for x in xs]
    den = sum(float((y**2).sum()) for y in ys) or 1.0

    def error(r: int) -> float:
        p, q = cand.spectrum.factors(r)
        w = torch.as_tensor((p @ q).reshape(tuple(mod.weight.shape)), dtype=mod.weight.dtype, device=mod.weight.device)
        with torch.no_grad():
            num = sum(float(((apply(x, w).double() - y) ** 2).sum()) for x, y in zip(xs, ys))
        return math.sqrt(num / den)

    return error


def _set_submodule(model, name: str, new) -> None:
    parent_name, _, child = name.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    setattr(parent, child, new)


def factorize_to_ranks(model: "nn.Module", ranks: dict[str, int]) -> list[dict[str, Any]]:
    """Replace each named ``nn.Linear`` / ``nn.Conv2d`` (groups=1) of ``model`` by its rank-``r``
    truncated SVD, at ranks decided elsewhere (the ONNX ``lowrank`` stage's, for fine-tuning)."""
    out = []
    for name, rank in ranks.items():
        mod = model.get_submodule(name)
        kind = _kind(mod)
        if kind is None or (kind == "Conv2d" and mod.groups != 1):
            raise ConfigError(f"layer {name!r} is {type(mod).__name__}; only nn.Linear and nn.Conv2d with groups=1 are factorised")
        w = mod.weight.detach().cpu().double().numpy()
        mat = w.reshape(w.shape[0], -1)
        if not 1 <= rank <= min(mat.shape):
            raise ConfigError(f"rank {rank} of layer {name!r} is outside 1..{min(mat.shape)}")
        p, q = Spectrum(mat, "exact").factors(rank)
        new = FactorizedLinear.from_linear(mod, p, q) if kind == "Linear" else FactorizedConv2d.from_conv(mod, p, q)
        _set_submodule(model, name, new)
        out.append({"name": name, "op": kind, "weight_shape": list(w.shape), "rank": rank})
    return out
