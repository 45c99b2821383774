"""2:4 structured sparsity: masks, TensorRT eligibility rules, channel permutation, ONNX pruning and
inspection. The torch side (masks held fixed through training) is in :mod:`.torch_masks`, imported
on demand so this package needs no torch.
"""
from __future__ import annotations

from .inspect import LayerInfo, inspect_layers
from .masks import is_2to4, mask_2to4, prune_2to4, retained_magnitude
from .permute import search_permutation
from .prune import PruneOptions, sparsify_onnx

__all__ = [
    "mask_2to4",
    "prune_2to4",
    "is_2to4",
    "retained_magnitude",
    "search_permutation",
    "PruneOptions",
    "sparsify_onnx",
    "LayerInfo",
    "inspect_layers",
]
