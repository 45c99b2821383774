"""Matching an ONNX layer to the torch module it came from: by value, through a folded BatchNorm."""
from __future__ import annotations

import numpy as np

from trtcompress.finetune.structure import SPARSE_MATCH, match
from trtcompress.sparsity.masks import mask_2to4


def test_a_pruned_folded_weight_finds_its_module_and_a_reordered_one_finds_none():
    rng = np.random.default_rng(0)
    torch_weights = {f"blocks.{i}.conv": rng.standard_normal((32, 16, 3, 3)).astype(np.float32) for i in range(4)}
    w = torch_weights["blocks.2.conv"]
    folded = w * rng.uniform(0.2, 3.0, (32, 1, 1, 1)).astype(np.float32)  # BatchNorm scale per output channel
    pruned = folded * mask_2to4(folded, 1)
    # an exporter's name for the weight says nothing: found by value among same-shape modules
    assert match(pruned, "onnx::Conv_123", 0, torch_weights, SPARSE_MATCH, True, set())[0] == "blocks.2.conv"
    # once taken, a module is not matched twice
    assert match(pruned, "onnx::Conv_123", 0, torch_weights, SPARSE_MATCH, True, {"blocks.2.conv"}) is None
    # input channels reordered (sparsify with permute): no module matches, so the stage refuses
    assert match(pruned[:, rng.permutation(16)], "blocks.2.conv.weight", 0, torch_weights, SPARSE_MATCH, True, set()) is None
