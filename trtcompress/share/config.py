"""The weight-sharing configuration."""
from __future__ import annotations

import dataclasses

from ..config import Config
from ..errors import ConfigError
from ..specs import parse_input_specs
from .kmeans import INITS

__all__ = ["ShareConfig", "GRANULARITIES", "SHARE_OPS", "SHARE_RULES", "SENSITIVITIES"]

GRANULARITIES = ("layer", "channel")
SHARE_RULES = ("bits", "error", "size")
SHARE_OPS = ("Conv", "Gemm", "MatMul")
SENSITIVITIES = ("layer", "model")


@dataclasses.dataclass(frozen=True)
class ShareConfig(Config):
    """How weights are clustered and which layers share.

    Each chosen layer's weight becomes ``2**bits`` shared values (``clusters`` overrides it), or
    the count given by the first ``layer_bits`` entry ``PATTERN=BITS`` matching the layer. Exact
    zeros keep a centroid of their own (``keep_zeros``), so pruned weights stay pruned; ``prune``
    first zeroes that fraction of each layer's smallest-magnitude weights (unstructured pruning,
    no fine-tuning). ``granularity`` ``channel`` gives each output channel its own codebook.
    Weights with fewer than ``min_size`` elements stay float: their codebook would cost as much.

    ``int8_grid`` puts the shared values on each output channel's INT8 grid: the weight is divided
    by the per-channel scale the quantizer will give it (max |w| / 127), clustered per layer into
    integer levels (±127 kept, so the scale stays) and decoded as ``level * scale``. A later
    ``quantize`` then finds exactly those levels as the int8 weights, and ``--weights int8`` ships
    them as int8 tensors that ``pack`` entropy-codes.

    ``rule`` picks each layer's count (``layer_bits`` entries still fix theirs): ``bits`` uses
    ``bits``/``clusters``; ``error`` the fewest bits in ``min_bits``..8 whose layer output on
    calibration data (``calib``) is within ``error`` relative error of the float layer (a layer
    that misses it at 8 bits stays float); ``size`` spends a budget of ``mean_bits`` bits per
    shared weight, codebooks included, greedily where a bit removes the most squared relative
    error: output error on ``calib`` when given, weight error otherwise.

    ``sensitivity`` says where the rules ``error`` and ``size`` measure a layer's error: ``layer``,
    the layer's own output (every layer's relative error counts the same, whatever it does to the
    model); ``model``, the model's outputs with only that layer shared (end to end, as HAWQ-v2/v3's
    mixed precision): the relative squared error of every floating-point output, averaged over the
    outputs, on ``calib``. ``size`` then spends its budget where a bit removes the most model
    error, assuming the layers' errors add (independent perturbations, to first order); ``error``
    bounds each layer's own contribution to it. It costs a model run per calibration batch for
    every layer and bit count tried (``size``: ``min_bits``..8 per layer), in ONNX Runtime
    sessions of ``threads`` intra-op threads (0: its choice).
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
    iters: int = 30  # Lloyd iterations; 0 keeps the initial centroids (TF-MOT before its fine-tuning)
    seed: int = 0
    int8_grid: bool = False
    rule: str = "bits"
    error: float = 0.05
    mean_bits: float = 4.0
    min_bits: int = 1
    # calibration data of the data-driven rules: a trtcompress.data spec; compress fills it from --calib
    calib: str | None = None
    preprocess: str | None = None
    limit: int | None = 32
    batch: int = 8
    inputs: tuple[str, ...] = ()  # shapes of dynamic calibration inputs, e.g. "ids:1x128:int64"
    sensitivity: str = "layer"
    threads: int = 0

    def reads_calib_data(self) -> bool:
        return self.rule == "error" or self.sensitivity == "model"

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
        if self.min_size < 1 or self.iters < 0:
            raise ConfigError("share min_size must be at least 1 and iters at least 0")
        if self.int8_grid and self.granularity != "layer":
            raise ConfigError("share int8_grid takes per-layer codebooks (the per-channel INT8 scale already adapts each channel); use granularity layer")
        if self.rule not in SHARE_RULES:
            raise ConfigError(f"share rule {self.rule!r} is not one of {', '.join(SHARE_RULES)}")
        if self.sensitivity not in SENSITIVITIES:
            raise ConfigError(f"share sensitivity {self.sensitivity!r} is not one of {', '.join(SENSITIVITIES)}")
        if self.sensitivity == "model" and self.rule == "bits":
            raise ConfigError("share sensitivity 'model' chooses bits per layer: use it with rule size or error (rule bits fixes them)")
        if self.threads < 0:
            raise ConfigError(f"share threads must be >= 0 (0: ONNX Runtime's choice), got {self.threads}")
        if not 1 <= self.min_bits <= 8:
            raise ConfigError(f"share min_bits must be 1..8, got {self.min_bits}")
        if not self.error > 0.0:
            raise ConfigError(f"share error budget must be > 0, got {self.error}")
        if not self.min_bits <= self.mean_bits <= 40.0:
            raise ConfigError(f"share mean_bits must be between min_bits ({self.min_bits}) and 40 (8-bit indices plus codebooks), got {self.mean_bits}")
        if (self.limit is not None and self.limit < 1) or self.batch < 1:
            raise ConfigError("share limit and batch must be at least 1")
        parse_input_specs(self.inputs)
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
