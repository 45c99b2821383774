"""Shared weights back to plain initializers, for stages that need constant weights (quantize).

The decode chains the share stage writes (Cast, Gather or GatherElements, Reshape, and the int8
grid's Mul) are constant subexpressions; folding them evaluates exactly the float32 arithmetic a
runtime does at load time, so the weights are the ones the shared model computes with.
"""
from __future__ import annotations

import onnx

__all__ = ["decode_shared"]


def decode_shared(model: onnx.ModelProto) -> tuple[onnx.ModelProto, int]:
    """``model`` with every shared weight folded to an initializer, and how many there were."""
    from ..metrics import shared_weights

    count = len(shared_weights(model))
    if not count:
        return model, 0
    import onnx_ir as ir
    from onnx_ir.passes.common import RemoveUnusedNodesPass

    from ..graph.fold_constants import FoldConstantsPass

    m = ir.from_proto(model)
    FoldConstantsPass()(m)
    RemoveUnusedNodesPass()(m)
    out = ir.to_proto(m)
    left = len(shared_weights(out))
    if left:
        from ..errors import ModelError

        raise ModelError(f"{left} of {count} shared weights could not be decoded to constants; run the share stage's output through 'trtcompress unpack' or re-share it")
    return out, count
