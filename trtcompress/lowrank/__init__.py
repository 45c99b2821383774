"""Low-rank factorisation of Conv, Gemm and MatMul weights by truncated SVD.

The ONNX side (:func:`factorize_onnx`, stage ``lowrank``) and the torch side
(:mod:`trtcompress.lowrank.torch_modules`, imported on demand so torch stays optional) share the
rank rules in :mod:`.ranks` and the SVD in :mod:`.svd`.
"""
from __future__ import annotations

from .config import RANK_RULES, LowRankConfig
from .onnx_factorize import LowRankResult, factorize_onnx
from .onnx_rules import register_rule, registered_rules
from .ranks import Candidate, Choice, choose_ranks, max_useful_rank
from .svd import Spectrum, exact_svd, randomized_svd

__all__ = [
    "LowRankConfig",
    "RANK_RULES",
    "factorize_onnx",
    "LowRankResult",
    "register_rule",
    "registered_rules",
    "Candidate",
    "Choice",
    "choose_ranks",
    "max_useful_rank",
    "Spectrum",
    "exact_svd",
    "randomized_svd",
]
