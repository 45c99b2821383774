"""What kind of value each model output holds, so a comparison judges it with a metric that fits.

Kinds and their verdict metric (the default threshold of each is in :data:`DEFAULT_THRESHOLDS`):

- ``classification``: class scores (logits or probabilities), one row per sample: top-1 agreement.
- ``embedding``: one vector per sample: cosine similarity per sample (its minimum is checked).
- ``tokens``: one vector per token ([N, T, ...] with an ``attention_mask``-style input [N, T]):
  cosine per real token (mask 1), averaged per sample; padding positions are not counted.
- ``dense``: maps and regressions (score/segmentation maps, boxes, depth, anything else): relative
  L2 error per sample ``||c - b|| / ||b||`` (its maximum is checked) and the fraction of changed
  elements: for a map whose values all lie in [0, 1] (sigmoid scores), an element changes when it
  crosses 0.5; otherwise when it moves by more than ``DENSE_CHANGE`` times the sample's max |base|.

Detection rule (:func:`detect_kind`, on the base model's first output batch), first match wins:

1. named like an embedding (``embed``, ``pool``, ``feature``, ``hidden``, ``vector``) with rank
   <= 2: ``embedding``;
2. shape [N, T, ...] (rank >= 3) whose first two dims equal an attention mask's [N, T] (an input
   named ``attention_mask``/``input_mask``/``mask``), unless named like a map (rule 3): ``tokens``;
3. named like a box / regression / map (``box``, ``bbox``, ``loc``, ``coord``, ``offset``,
   ``regress``, ``delta``, ``landmark``, ``depth``, ``heatmap``, ``map``, ``mask``, ``seg``): ``dense``;
4. shape [N, C] with C > 1: ``classification`` (logits; rows that are non-negative and sum to 1,
   i.e. softmax outputs, are recorded as probabilities);
5. anything else (rank >= 3 maps, [N, 1] or [N] regressions, scalars): ``dense``.

So top-1 agreement is never computed for boxes ([N, K, 4], or [N, 4] named as boxes). A [N, D]
embedding without such a name reads as ``classification``: name it with ``--output-kind NAME=embedding``.
"""
from __future__ import annotations

import re
from typing import Mapping

import numpy as np

from .errors import ConfigError

__all__ = ["KINDS", "DEFAULT_THRESHOLDS", "DENSE_CHANGE", "detect_kind", "find_mask", "parse_output_kinds", "is_probability_rows"]

KINDS = ("classification", "embedding", "tokens", "dense")

# Defaults a little below what a good INT8 model reaches (measured 2026-12-03 on this project's
# 2-core EPYC, benchmarks/RESULTS.md "Per-kind verdicts"): EfficientNet-Lite0, CPU form (the demo),
# 94.79% top-1 agreement with FP32 on 192 photo views (logits cosine mean 0.991, worst sample
# 0.922); Fashion CNN 99.9% / 99.8% and ViT 99.8% / 99.3% (TensorRT / CPU form, 1000 held-out
# samples, worst-sample cosine >= 0.998); a BERT-style encoder (transformers, random weights, 2
# layers) 0.99999 cosine over real tokens in both forms. Dense: a good INT8 model's outputs sit
# near 20 dB SQNR (EfficientNet-Lite0's logits 19.7 dB, i.e. relative error 0.10), so 0.15, and
# at most 1% of elements changing. Broken models fail: per-tensor depthwise weight scales give 67%
# top-1 agreement; the PP-OCRv4 text detector's INT8 score map flips 6.5-10.8% of its pixels
# across 0.5 at relative error 0.59-1.0.
DEFAULT_THRESHOLDS: dict[str, dict[str, float]] = {
    "classification": {"min_top1": 0.90},
    "embedding": {"min_cosine": 0.95},
    "tokens": {"min_cosine": 0.95},
    "dense": {"max_rel_error": 0.15, "max_changed": 0.01},
}
DENSE_CHANGE = 0.1  # an unbounded dense element "changes" past this fraction of the sample's max |base|

_DENSE_NAMES = re.compile(r"box|bbox|(^|[^a-z])loc([^a-z]|$)|coord|offset|regress|delta|landmark|depth|heatmap|map|mask|seg", re.I)
_EMBED_NAMES = re.compile(r"embed|pool|feature|hidden|vector", re.I)
_MASK_NAMES = ("attention_mask", "input_mask", "mask")


def find_mask(feed: Mapping[str, np.ndarray]) -> np.ndarray | None:
    """The attention mask of a feed: an integer or boolean [N, T] input named like one."""
    for name in _MASK_NAMES:
        for key, v in feed.items():
            if key.lower() == name or (name == "attention_mask" and key.lower().endswith("attention_mask")):
                a = np.asarray(v)
                if a.ndim == 2 and (a.dtype.kind in "iub"):
                    return a
    return None


def is_probability_rows(x: np.ndarray) -> bool:
    """Rows (last axis) that are non-negative and sum to 1: a softmax output."""
    if x.size == 0 or x.min() < 0:
        return False
    return bool(np.allclose(x.sum(axis=-1), 1.0, atol=1e-3))


def detect_kind(name: str, base: np.ndarray, mask: np.ndarray | None = None) -> str:
    """The kind of output ``name`` from one batch of the base model's values (see the module docstring)."""
    tokens = mask is not None and base.ndim >= 3 and base.shape[:2] == mask.shape
    embed_name = bool(_EMBED_NAMES.search(name))
    if embed_name and base.ndim <= 2:
        return "embedding"
    if tokens and (embed_name or not _DENSE_NAMES.search(name)):
        return "tokens"
    if _DENSE_NAMES.search(name):
        return "dense"
    if base.ndim == 2 and base.shape[1] > 1:
        return "classification"
    return "dense"


def parse_output_kinds(items: tuple[str, ...] | list[str]) -> dict[str, str]:
    """``("name=kind", ...)`` -> {name: kind}; a one-line ConfigError on a bad item."""
    out: dict[str, str] = {}
    for item in items:
        name, sep, kind = str(item).rpartition("=")
        if not sep or not name:
            raise ConfigError(f"output kind {item!r} must be NAME=KIND (kinds: {', '.join(KINDS)})")
        if kind not in KINDS:
            raise ConfigError(f"output kind {kind!r} for {name!r} is not one of {', '.join(KINDS)}")
        out[name] = kind
    return out
