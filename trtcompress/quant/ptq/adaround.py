"""AdaRound: learned weight rounding (Nagel et al., 2020, "Up or Down? Adaptive Rounding for
Post-Training Quantization"), layer by layer on calibration data, no labels.

Rounding each weight to the nearest grid point minimises each weight's error, not the layer's
output error; choosing up or down per weight so that ``X W_q`` stays close to ``X W`` on real
inputs ``X`` does better (the paper: MobileNetV2 per-tensor 4-bit from near 0 to 64% top-1). Per
layer, with the weight grid the written form really uses (per-channel symmetric int8 scale, twice
it for the CPU form's int7 layers: :func:`..weight_grids`):

    W_soft = s * clip(floor(W / s) + h(V), -q, q),  h(V) = clip(sigmoid(V) * 1.2 - 0.1, 0, 1)

``V`` starts where ``h(V)`` is the fractional part (W_soft = W) and Adam minimises the output error
``|X W_soft - X W|^2`` (summed over output channels, mean over rows) plus ``lambda * sum(1 - |2h - 1|^beta)``,
which pulls every ``h`` to 0 or 1 as ``beta`` anneals from 20 to 2 after a warm-up without it.
The result is ``floor(W / s) + (V >= 0)``.

Inputs: the FP32 model's input to each layer on the calibration data, one ONNX Runtime pass for
every layer. A Conv is learned as a matrix product on rows of im2col patches at positions drawn
once per sample (``rows`` in all per layer), so a layer costs the same whatever its resolution.

What ships: the weights are written back as ``q * s`` (exactly on the grid) except each channel's
largest-magnitude weight, which stays as it was: it sets the channel's scale, so the writers
recompute the same ``s`` and their rounding of ``q * s`` gives back ``q`` (non-largest int7 values
are kept within 63 for that reason). :func:`adaround` checks this with the writers' own quantizer.
A layer whose learned rounding does not beat nearest rounding on its rows keeps nearest rounding.

torch is imported when this runs (the ``torch`` extra); the quantize stage needs it only here.
"""
from __future__ import annotations

import dataclasses
import time
from typing import Any, Iterable, Mapping

import numpy as np
import onnx_ir as ir

from ...errors import ConfigError
from ...graph._util import const_array
from ..scales import quantize_weight, scales_from_amax, weight_amax
from .bias_correction import WeightGrid
from .feeds import limited

__all__ = ["AdaRoundConfig", "LearnedGrid", "adaround", "write"]

ZETA, GAMMA = 1.1, -0.1  # the rectified sigmoid's stretch (the paper's values)


@dataclasses.dataclass(frozen=True)
class AdaRoundConfig:
    """``iterations`` of Adam per layer (``lr``), on minibatches of ``batch`` rows out of ``rows``
    drawn from ``samples`` calibration samples (fewer rows, down to a quarter, where a row is long:
    a depthwise conv's row holds every channel's patch, and each channel's few weights need few
    rows); ``reg``: lambda; ``warmup``: the fraction of
    iterations without the rounding regulariser; ``beta``: its annealing (start, end);
    ``threads``: torch's and ONNX Runtime's (0: one for torch, ONNX Runtime's default)."""

    iterations: int = 200
    rows: int = 2048
    batch: int = 256
    samples: int | None = 128
    lr: float = 1e-2
    reg: float = 0.01
    warmup: float = 0.2
    beta: tuple[float, float] = (20.0, 2.0)
    threads: int = 0
    seed: int = 0

    def __post_init__(self) -> None:
        if self.iterations < 1:
            raise ConfigError(f"adaround iterations must be at least 1, got {self.iterations}")
        if self.rows < 1 or self.batch < 1:
            raise ConfigError(f"adaround rows and batch must be at least 1, got {self.rows} and {self.batch}")
        if self.samples is not None and self.samples < 1:
            raise ConfigError(f"adaround samples must be at least 1, got {self.samples}")


@dataclasses.dataclass(frozen=True)
class LearnedGrid:
    """A layer's weight after AdaRound, as a grid for bias correction: ``dequantized`` gives the
    learned weights whatever it is given (bias correction then measures float minus learned)."""

    weights: np.ndarray

    def dequantized(self, w: np.ndarray) -> np.ndarray:
        return self.weights


@dataclasses.dataclass
class _Layer:
    node: ir.Node
    w: np.ndarray  # the weight as stored
    grid: WeightGrid
    groups: int  # Conv's group; 1 otherwise
    kind: str  # conv, gemm_t (weight [N, K]), matmul (weight [K, N])
    rows: list[np.ndarray] = dataclasses.field(default_factory=list)  # [P, G, Kg] patches


def _layers(graph: ir.Graph, grids: Mapping[str, WeightGrid], skipped: dict[str, str]) -> list[_Layer]:
    out = []
    for node in graph:
        grid = grids.get(node.name)
        if grid is None:
            continue
        w = const_array(node.inputs[1]) if len(node.inputs) > 1 else None
        if w is None or w.dtype != np.float32:
            skipped[node.name] = "no constant float32 weight"
            continue
        attrs = node.attributes
        if node.op_type == "Conv":
            auto_pad = attrs["auto_pad"].as_string() if "auto_pad" in attrs else "NOTSET"
            if w.ndim != 4 or auto_pad not in ("NOTSET", ""):
                skipped[node.name] = "only 2-D convs with explicit pads"
                continue
            out.append(_Layer(node, w, grid, attrs["group"].as_int() if "group" in attrs else 1, "conv"))
        elif node.op_type == "Gemm" and w.ndim == 2 and not ("transA" in attrs and attrs["transA"].as_int()):
            out.append(_Layer(node, w, grid, 1, "gemm_t" if "transB" in attrs and attrs["transB"].as_int() else "matmul"))
        elif node.op_type == "MatMul" and w.ndim == 2:
            out.append(_Layer(node, w, grid, 1, "matmul"))
        else:
            skipped[node.name] = f"{node.op_type} with a {w.ndim}-D weight"
    return out


def _patches(x: np.ndarray, node: ir.Node, groups: int, kernel: tuple[int, int], per_sample: int, rng: np.random.Generator) -> np.ndarray:
    """``per_sample`` im2col rows per sample of ``x`` [N, C, H, W] at random output positions:
    [N * per_sample, groups, C / groups * kh * kw], in the weight's (C, kh, kw) order."""
    a = node.attributes

    def ints(name: str, default: list[int]) -> list[int]:
        return list(a[name].as_ints()) if name in a else default

    kh, kw = kernel
    sh, sw = ints("strides", [1, 1])
    dh, dw = ints("dilations", [1, 1])
    pt, pl, pb, pr = ints("pads", [0, 0, 0, 0])
    n, c, h, w = x.shape
    xp = np.pad(x, ((0, 0), (0, 0), (pt, pb), (pl, pr)))
    oh, ow = (h + pt + pb - dh * (kh - 1) - 1) // sh + 1, (w + pl + pr - dw * (kw - 1) - 1) // sw + 1
    k = min(per_sample, oh * ow)
    pos = np.stack([rng.choice(oh * ow, k, replace=False) for _ in range(n)])  # [N, k]
    ni = np.repeat(np.arange(n), k)
    oy, ox = (pos // ow).ravel() * sh, (pos % ow).ravel() * sw
    taps = [xp[ni, :, oy + i * dh, ox + j * dw] for i in range(kh) for j in range(kw)]  # each [N*k, C]
    p = np.stack(taps, axis=-1)  # [N*k, C, kh*kw]
    return p.reshape(len(p), groups, (c // groups) * kh * kw)


def _rows_of(layer: _Layer, x: np.ndarray, per_sample: int, rng: np.random.Generator) -> np.ndarray:
    if layer.kind == "conv":
        return _patches(x, layer.node, layer.groups, layer.w.shape[2:], per_sample, rng)
    n = len(x)
    x = x.reshape(-1, x.shape[-1])  # a token's features are a row
    if len(x) > per_sample * n:
        x = x[np.sort(rng.choice(len(x), per_sample * n, replace=False))]
    return x[:, None, :]


ROW_BUDGET = 1 << 21  # floats per layer's rows (8 MB)


BATCH_BUDGET = 1 << 18  # floats per minibatch


def _length(layer: _Layer) -> int:
    w = layer.w
    return int(np.prod(w.shape[1:])) * (w.shape[0] if layer.kind == "conv" and layer.groups > 1 else 1)


def _row_count(layer: _Layer, rows: int) -> int:
    """Rows kept for ``layer``: ``rows``, fewer (not under a quarter) where they are long."""
    return int(min(rows, max(rows // 4, ROW_BUDGET // max(1, _length(layer)))))


def _collect(model: ir.Model, layers: list[_Layer], feeds: Iterable[Mapping[str, np.ndarray]], config: AdaRoundConfig, rng: np.random.Generator) -> int:
    """One ONNX Runtime pass of the float model returning every layer's input; each sample gives
    ``rows / samples`` rows per layer."""
    from ...sessions import SessionConfig, open_session

    copy = ir.serde.deserialize_model(ir.serde.serialize_model(model))
    names = []
    outputs = {v.name for v in copy.graph.outputs}
    values = {n.name: n for n in copy.graph}
    for layer in layers:
        v = values[layer.node.name].inputs[0]
        names.append(v.name)
        if v.name not in outputs and not v.is_graph_input():
            copy.graph.outputs.append(v)
            outputs.add(v.name)
    session = open_session(ir.serde.serialize_model(copy), SessionConfig(threads=config.threads))
    inputs = {i.name for i in session.get_inputs()}
    per_sample = [max(1, -(-_row_count(layer, config.rows) // (config.samples or 64))) for layer in layers]
    seen = 0
    for n, feed in limited(feeds, config.samples):
        wanted = sorted(set(names) - inputs)
        got = dict(zip(wanted, session.run(wanted, {k: v for k, v in feed.items() if k in inputs}))) if wanted else {}
        got.update({k: v for k, v in feed.items() if k in inputs})
        for layer, name, k in zip(layers, names, per_sample):
            layer.rows.append(_rows_of(layer, np.asarray(got[name], np.float32), k, rng))
        seen += n
    return seen


def _as_matrix(torch: Any, w: Any, layer: _Layer) -> Any:
    """The weight as [G, Kg, Og]: output = rows [P, G, Kg] x it."""
    if layer.kind == "conv":
        oc = w.shape[0]
        return w.reshape(layer.groups, oc // layer.groups, -1).permute(0, 2, 1)
    return (w.T if layer.kind == "gemm_t" else w)[None]


def _grid(layer: _Layer) -> tuple[np.ndarray, np.ndarray, int]:
    """The written form's scale (broadcast to the weight), the mask of the weights that set it
    (each channel's largest magnitude: left as they are) and the largest |q| others may take."""
    w, axis = layer.w, layer.grid.axis
    amax = weight_amax(w, axis)
    scale = scales_from_amax(amax) * np.float32(layer.grid.step)
    if axis is not None and np.ndim(scale) == 1:
        shape = [1] * w.ndim
        shape[axis % w.ndim] = -1
        scale, amax = scale.reshape(shape), amax.reshape(shape)
    fixed = np.abs(w) >= amax
    return np.broadcast_to(scale, w.shape).astype(np.float32), fixed, 127 if layer.grid.step == 1.0 else 63


def _apply(torch: Any, rows: Any, m: Any) -> Any:
    """rows [P, G, Kg] times the weight [G, Kg, Og]: [P, G, Og] (one output per group, a
    depthwise conv, as a multiply-sum: a batched product of G vectors is far slower)."""
    if m.shape[0] > 1 and m.shape[2] == 1:
        return (rows * m[None, :, :, 0]).sum(-1, keepdim=True)
    return torch.einsum("pgk,gko->pgo", rows, m) if m.shape[0] > 1 else (rows[:, 0] @ m[0])[:, None]


def _error(torch: Any, rows: Any, target: Any, w: Any, layer: _Layer) -> float:
    y = _apply(torch, rows, _as_matrix(torch, w, layer))
    return float(((y - target) ** 2).sum() / (target**2).sum().clamp_min(1e-30))


def _learn(torch: Any, layer: _Layer, config: AdaRoundConfig, gen: Any) -> tuple[np.ndarray, dict[str, Any]]:
    """The layer's new weight and its report row."""
    scale, fixed, qmax = _grid(layer)
    w = layer.w
    rows = torch.from_numpy(np.concatenate(layer.rows))
    layer.rows = []
    wt = torch.from_numpy(np.array(w))
    target = _apply(torch, rows, _as_matrix(torch, wt, layer))
    s = torch.from_numpy(scale)
    floor = torch.floor(wt / s)
    frac = (wt / s - floor).clamp(1e-4, 1 - 1e-4)
    v = (-torch.log((ZETA - GAMMA) / (frac - GAMMA) - 1)).requires_grad_(True)
    keep = torch.from_numpy(fixed)
    opt = torch.optim.Adam([v], lr=config.lr)
    warm = int(config.warmup * config.iterations)
    b0, b1 = config.beta
    batch = min(config.batch, len(rows), max(32, BATCH_BUDGET // max(1, _length(layer))))
    for it in range(config.iterations):
        idx = torch.randint(len(rows), (batch,), generator=gen)
        h = (torch.sigmoid(v) * (ZETA - GAMMA) + GAMMA).clamp(0, 1)
        soft = torch.where(keep, wt, s * (floor + h).clamp(-qmax, qmax))
        y = _apply(torch, rows[idx], _as_matrix(torch, soft, layer))
        loss = ((y - target[idx]) ** 2).sum(dim=(1, 2)).mean()
        if it >= warm:
            beta = b1 + (b0 - b1) * (1 - (it - warm) / max(1, config.iterations - warm))
            loss = loss + config.reg * (1 - (2 * h - 1).abs().pow(beta)).sum()  # (the kept weights' h is unused)
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        q = (floor + (v >= 0).to(floor.dtype)).clamp(-qmax, qmax)
        learned = torch.where(keep, wt, s * q)
        nearest_q = torch.from_numpy(quantize_weight(w, scale, None).astype(np.float32))
        nearest = nearest_q * s
        before, after = _error(torch, rows, target, nearest, layer), _error(torch, rows, target, learned, layer)
    row = {"layer": layer.node.name, "error_nearest": float(f"{before:.4g}"), "error_learned": float(f"{after:.4g}"),
           "flipped": round(float(((q != nearest_q) & ~keep).float().mean()), 4)}
    if not after < before:
        row["kept"] = "nearest rounding (learned was not better)"
        return w, row
    out = learned.numpy().astype(np.float32)
    # what the writers will do: the scale from the new weights, their rounding of them
    rescaled = scales_from_amax(weight_amax(out, layer.grid.axis)) * np.float32(layer.grid.step)
    wanted = np.where(fixed, quantize_weight(w, scale, None), q.numpy().astype(np.int8))
    if not np.array_equal(quantize_weight(out, rescaled, layer.grid.axis), wanted):
        row["kept"] = "nearest rounding (the writers would not reproduce the learned integers)"
        return w, row
    return out, row


def adaround(model: ir.Model, grids: Mapping[str, WeightGrid], feeds: Iterable[Mapping[str, np.ndarray]],
             config: AdaRoundConfig = AdaRoundConfig()) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Learned weights (node name -> the new weight, on the grid) for the layers in ``grids``, and
    the report (per layer: relative output error on its rows with nearest and learned rounding,
    the fraction of weights rounded the other way). The model is not changed: :func:`write`."""
    from ..._optional import require

    torch = require("torch", "--adaround (learned weight rounding)")
    skipped: dict[str, str] = {}
    layers = _layers(model.graph, grids, skipped)
    if not layers:
        return {}, {"layers": [], "skipped": skipped, "samples": 0}
    rng = np.random.default_rng(config.seed)
    t0 = time.perf_counter()
    seen = _collect(model, layers, feeds, config, rng)
    if not seen:
        raise ConfigError("adaround got no calibration samples; give calibration data (--calib)")
    collect_s = time.perf_counter() - t0
    threads = torch.get_num_threads()
    # one thread unless told: on a loaded 2-core machine two threads ran 10x slower (their
    # workers spin-wait for each other), and these small products gain little from more
    torch.set_num_threads(config.threads or 1)
    gen = torch.Generator().manual_seed(config.seed)
    learned, rows = {}, []
    try:
        for layer in layers:
            w, row = _learn(torch, layer, config, gen)
            if w is not layer.w:
                learned[layer.node.name] = w
            rows.append(row)
    finally:
        torch.set_num_threads(threads)
    return learned, {"layers": rows, "skipped": skipped, "samples": seen, "collect_seconds": round(collect_s, 3)}


def write(model: ir.Model, learned: Mapping[str, np.ndarray]) -> None:
    """Put the learned weights in ``model`` (in place); a weight another node also reads is copied
    for this layer."""
    from ...graph._util import add_initializer

    for node in model.graph:
        w = learned.get(node.name)
        if w is None:
            continue
        old = node.inputs[1]
        node.replace_input_with(1, add_initializer(model.graph, w, f"{old.name}_adarounded"))
        if not old.uses() and not old.is_graph_output() and old.name in model.graph.initializers:
            model.graph.initializers.pop(old.name)
