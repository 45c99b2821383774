"""The weight-sharing configuration."""
from __future__ import annotations

import dataclasses

from ..config import Config
from ..errors import ConfigError
from .kmeans import INITS

__all__ = ["ShareConfig", "GRANULARITIES", "SHARE_OPS"]

GRANULARITIES = ("layer", "channel")
SHARE_OPS = ("Conv", "Gemm", "MatMul")


@dataclasses.dataclass(frozen=True)
class ShareConfig(Config):
    """How weights are clustered and which layers share.

    Each chosen layer's weight becomes ``2**bits`` shared values (``clusters`` overrides it), or
    the count given by the first ``layer_bits`` entry ``PATTERN=BITS`` matching the layer. Exact
    zeros keep a centroid of their own (``keep_zeros``), so pruned weights stay pruned; ``prune``
    first zeroes that fraction of each layer's smallest-magnitude weights (unstructured pruning,
    no fine-tuning). ``granularity`` ``channel`` gives each output channel its own codebook.
    Weights with fewer than ``min_size`` elements stay float: their codebook would cost as much.
    """

    bits: int = 4
    clusters: int | None = None
    layer_bits: tuple[str, ...] = ()  # "PATTERN=BITS", first match wins, e.g. "Gemm=5"
    init: str = "linear"
    granularity: str = "layer"
    include: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()
    op_types: tuple[str, ...] = SHARE_OPS
    min_size: int = 1024
    prune: float = 0.0
    keep_zeros: bool = True
    iters: int = 30
    seed: int = 0

    def validate(self) -> None:
        if not 1 <= self.bits <= 8:
            raise ConfigError(f"share bits must be 1..8 (indices are uint8), got {self.bits}")
        if self.clusters is not None and not 2 <= self.clusters <= 256:
            raise ConfigError(f"share clusters must be 2..256 (indices are uint8), got {self.clusters}")
        self.layer_counts()
        if self.init not in INITS:
            raise ConfigError(f"share init {self.init!r} is not one of {', '.join(INITS)}")
        if self.granularity not in GRANULARITIES:
            raise ConfigError(f"share granularity {self.granularity!r} is not one of {', '.join(GRANULARITIES)}")
        bad = [o for o in self.op_types if o not in SHARE_OPS]
        if bad or not self.op_types:
            raise ConfigError(f"share op_types {', '.join(bad) or '(none)'} not supported; choose from {', '.join(SHARE_OPS)}")
        if self.min_size < 1 or self.iters < 1:
            raise ConfigError("share min_size and iters must be at least 1")
        if not 0.0 <= self.prune < 1.0:
            raise ConfigError(f"share prune must be a fraction in [0, 1), got {self.prune}")

    def default_clusters(self) -> int:
        return self.clusters if self.clusters is not None else 2 ** self.bits

    def layer_counts(self) -> tuple[tuple[str, int], ...]:
        """``layer_bits`` as (pattern, clusters)."""
        out = []
        for entry in self.layer_bits:
            pattern, sep, bits = entry.rpartition("=")
            if not sep or not pattern or not bits.strip().isdigit() or not 1 <= int(bits) <= 8:
                raise ConfigError(f"share layer_bits entry {entry!r} must be PATTERN=BITS with BITS in 1..8, e.g. 'Gemm=5'")
            out.append((pattern, 2 ** int(bits)))
        return tuple(out)
