"""How many shared values each layer gets: fixed, the fewest within an error budget, or a size budget
spent where it removes the most error (Deep Compression fixes bits per layer type; TF-MOT one count
for all; low-rank's ranks in this package are chosen the same three ways).

A layer's cost counts its indices (``bits`` per weight) and its codebooks (one float per value, per
layer or per output channel), so a per-channel layer pays for its many small codebooks.
"""
from __future__ import annotations

import dataclasses
import heapq
from typing import TYPE_CHECKING, Callable

import numpy as np

from ..errors import ConfigError
from .config import ShareConfig

if TYPE_CHECKING:
    import onnx_ir as ir

__all__ = ["Layer", "Clustered", "Measure", "choose_counts"]

# per channel, a row shorter than this many weights per cluster stays float: its float codebook
# costs 4k bytes against the row's 3 bytes per weight saved (EfficientNet-Lite0's depthwise rows of
# 9 or 25 weights made the packed model 3.6x smaller instead of more, measured 2026-12-03)
MIN_ROW_PER_CLUSTER = 4


@dataclasses.dataclass
class Layer:
    node: "ir.Node"
    w: "ir.Value"
    weight: np.ndarray
    fixed: int | None  # clusters set by the config (``bits``/``clusters`` or a ``layer_bits`` entry)
    row: int | None  # weights per output channel with per-channel codebooks, else None

    @property
    def name(self) -> str:
        return self.node.name

    def max_bits(self) -> int:
        if self.row is None:
            return 8
        return min(8, max(0, int(np.floor(np.log2(self.row / MIN_ROW_PER_CLUSTER)))))

    def cost(self, bits: int) -> int:
        """Bits stored for this layer at ``2**bits`` values: indices plus float codebooks."""
        books = 1 if self.row is None else self.weight.size // self.row
        return self.weight.size * bits + books * 2 ** bits * self.weight.itemsize * 8


@dataclasses.dataclass
class Clustered:
    k: int
    book: np.ndarray  # [k] per layer; per channel [rows, k] or [k, rows] (``last``) as stored
    idx: np.ndarray  # uint8, the weight's shape (per layer) or the weight viewed as 2-D
    decoded: np.ndarray  # the shared weight, in the weight's shape and dtype
    work: np.ndarray  # the weight clustered (after any pruning), float64
    last: bool = False  # per channel: channel axis last (MatMul, Gemm without transB)
    scale: np.ndarray | None = None  # int8 grid: the per-channel scale, shaped to broadcast over the weight


@dataclasses.dataclass
class Measure:
    """A layer's error with shared weights: on calibration data (``probes``: at the layer's output
    or the model's, as ``where`` says), or the weight's relative error when no data is used."""
    probes: dict[str, Callable[[np.ndarray], float]] | None
    where: str = "weights"

    @property
    def data(self) -> bool:
        return self.probes is not None

    def error(self, layer: Layer, c: Clustered) -> float:
        if self.probes is not None:
            return self.probes[layer.name](c.decoded)
        norm = float(np.linalg.norm(layer.weight.astype(np.float64).ravel()))
        return float(np.linalg.norm((c.decoded.astype(np.float64) - layer.weight).ravel())) / norm if norm else 0.0


Cluster = Callable[[Layer, int], Clustered]
Choice = tuple["int | None", str]  # (clusters or None for float, why)


def choose_counts(layers: list[Layer], config: ShareConfig, measure: Measure, cluster: Cluster) -> dict[str, Choice]:
    """Each layer's cluster count (None: stays float) and the reason."""
    out: dict[str, Choice] = {l.name: (l.fixed, "fixed") for l in layers if l.fixed is not None}
    free = [l for l in layers if l.fixed is None]
    if config.rule == "error":
        out.update({l.name: _by_error(l, config, measure, cluster) for l in free})
    elif config.rule == "size":
        out.update(_by_size(layers, free, config, measure, cluster))
    return out


def _by_error(layer: Layer, config: ShareConfig, measure: Measure, cluster: Cluster) -> Choice:
    """Bisection over ``min_bits``..``max_bits`` (the error falls with the bit count)."""
    lo, hi = config.min_bits, layer.max_bits()
    errs = {hi: measure.error(layer, cluster(layer, 2 ** hi))}
    if errs[hi] > config.error:
        return None, f"relative output error {errs[hi]:.4g} at {hi} bits exceeds the budget {config.error:g}"
    while lo < hi:
        mid = (lo + hi) // 2
        errs[mid] = measure.error(layer, cluster(layer, 2 ** mid))
        if errs[mid] <= config.error:
            hi = mid
        else:
            lo = mid + 1
    return 2 ** hi, f"fewest bits within error {config.error:g} ({errs[hi]:.4g})"


def _by_size(layers: list[Layer], free: list[Layer], config: ShareConfig, measure: Measure, cluster: Cluster) -> dict[str, Choice]:
    """Greedy on the lower convex hull: from ``min_bits`` everywhere, repeatedly take the step (to
    any higher count) with the most squared error removed per stored bit, while the budget allows."""
    budget = config.mean_bits * sum(l.weight.size for l in layers)
    used = sum(l.cost(max(1, (l.fixed - 1).bit_length())) for l in layers if l.fixed is not None)
    used += sum(l.cost(config.min_bits) for l in free)
    if used > budget:
        raise ConfigError(f"share rule 'size': mean_bits {config.mean_bits:g} is below what the layers need at min_bits "
                          f"{config.min_bits} ({used / sum(l.weight.size for l in layers):.2f} with codebooks); raise mean_bits or lower min_bits")
    errors = {l.name: {b: measure.error(l, cluster(l, 2 ** b)) ** 2 for b in range(config.min_bits, l.max_bits() + 1)} for l in free}
    bits = {l.name: config.min_bits for l in free}
    heap: list[tuple[float, int, str, int]] = []

    def push(i: int, l: Layer) -> None:
        b, e = bits[l.name], errors[l.name]
        steps = [((e[b] - e[t]) / (l.cost(t) - l.cost(b)), t) for t in range(b + 1, l.max_bits() + 1)]
        best = max(steps, default=(0.0, b))
        if best[0] > 0:
            heapq.heappush(heap, (-best[0], i, l.name, best[1]))

    for i, l in enumerate(free):
        push(i, l)
    by_name = {l.name: (i, l) for i, l in enumerate(free)}
    while heap:
        _, i, name, target = heapq.heappop(heap)
        l = by_name[name][1]
        step = l.cost(target) - l.cost(bits[name])
        if used + step <= budget:
            used += step
            bits[name] = target
        else:  # that step does not fit: a smaller one of this layer may
            target = max((t for t in range(bits[name] + 1, target) if used + l.cost(t) - l.cost(bits[name]) <= budget), default=None)
            if target is None:
                continue
            used += l.cost(target) - l.cost(bits[name])
            bits[name] = target
        push(i, l)
    return {l.name: (2 ** bits[l.name], f"size budget {config.mean_bits:g} bits per weight (error {errors[l.name][bits[l.name]] ** 0.5:.4g})")
            for l in free if l.max_bits() >= config.min_bits}
