"""Factorisation rules for ONNX ops, registered by op type.

A rule reads a node's constant weight as an ``out x in`` matrix ``M``, says how many output
positions the node computes per sample, writes a weight back from a matrix (used to measure the
error of a truncated weight), and rewrites the node as two nodes from factors ``p`` (out x r) and
``q`` (r x in) with ``p @ q ~= M``: the first node applies ``q``, the second ``p`` and the bias.
Adding an op is one class and one registration.
"""
from __future__ import annotations

import dataclasses
from typing import Protocol

import numpy as np
import onnx
from onnx import helper, numpy_helper

from .graph import GraphInfo, attrs

__all__ = ["FactorRule", "Rewrite", "register_rule", "get_rule", "registered_rules"]


@dataclasses.dataclass
class Rewrite:
    nodes: list[onnx.NodeProto]
    initializers: list[onnx.TensorProto]


class FactorRule(Protocol):
    def weight_name(self, node: onnx.NodeProto, info: GraphInfo) -> str | None: ...

    def skip_reason(self, node: onnx.NodeProto, info: GraphInfo) -> str | None: ...

    def matrix(self, node: onnx.NodeProto, w: np.ndarray) -> np.ndarray: ...

    def from_matrix(self, node: onnx.NodeProto, m: np.ndarray, like: np.ndarray) -> np.ndarray: ...

    def positions(self, node: onnx.NodeProto, info: GraphInfo) -> int | None: ...

    def rewrite(self, node: onnx.NodeProto, p: np.ndarray, q: np.ndarray, w_shape: tuple[int, ...], dtype: np.dtype) -> Rewrite: ...


_RULES: dict[str, FactorRule] = {}


def register_rule(op_type: str):
    def deco(cls):
        _RULES[op_type] = cls()
        return cls

    return deco


def get_rule(op_type: str) -> FactorRule | None:
    return _RULES.get(op_type)


def registered_rules() -> list[str]:
    return sorted(_RULES)


def _names(node: onnx.NodeProto) -> tuple[str, str, str]:
    base = node.name or node.output[0]
    return base, f"{base}/lowrank_q", f"{base}/lowrank_p"


def _tensor(a: np.ndarray, name: str, dtype: np.dtype) -> onnx.TensorProto:
    return numpy_helper.from_array(np.ascontiguousarray(a.astype(dtype)), name)


def _constant_reason(name: str, info: GraphInfo, role: str) -> str | None:
    if name not in info.initializers:
        return f"{role} {name!r} is not a constant initialiser"
    if name in info.graph_inputs:
        return f"{role} {name!r} is a graph input (it can be overridden at run time)"
    if info.initializers[name].data_type not in (onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16, onnx.TensorProto.DOUBLE):
        return f"{role} {name!r} is not floating point"
    return None


@register_rule("MatMul")
class MatMulRule:
    """``Y = X @ W`` with a constant 2-D ``W`` (K x N): ``X @ q.T`` then ``@ p.T``."""

    def weight_name(self, node, info):
        return node.input[1]

    def skip_reason(self, node, info):
        if node.input[0] in info.initializers and node.input[1] not in info.initializers:
            return "the constant is the left operand (W @ X); only X @ W is factorised"
        reason = _constant_reason(node.input[1], info, "weight")
        if reason:
            return reason
        if len(info.initializers[node.input[1]].dims) != 2:
            return f"weight has rank {len(info.initializers[node.input[1]].dims)}; only 2-D weights are factorised"
        return None

    def matrix(self, node, w):
        return w.T

    def from_matrix(self, node, m, like):
        return m.T

    def positions(self, node, info):
        return info.per_sample(node.input[0], slice(None, -1))

    def rewrite(self, node, p, q, w_shape, dtype):
        base, qn, pn = _names(node)
        mid = f"{node.output[0]}/lowrank"
        return Rewrite(
            [
                helper.make_node("MatMul", [node.input[0], qn], [mid], name=f"{base}/lowrank_a"),
                helper.make_node("MatMul", [mid, pn], list(node.output), name=f"{base}/lowrank_b"),
            ],
            [_tensor(q.T, qn, dtype), _tensor(p.T, pn, dtype)],
        )


@register_rule("Gemm")
class GemmRule:
    """``Y = alpha op(A) op(B) + beta C`` with a constant ``B``: two Gemms with transB=1."""

    def weight_name(self, node, info):
        return node.input[1]

    def skip_reason(self, node, info):
        return _constant_reason(node.input[1], info, "weight")

    def matrix(self, node, w):
        return w if attrs(node).get("transB", 0) else w.T

    def from_matrix(self, node, m, like):
        return m if attrs(node).get("transB", 0) else m.T

    def positions(self, node, info):
        shape = info.shapes.get(node.input[0])
        if shape is None:
            return None
        d = shape[1] if attrs(node).get("transA", 0) else shape[0]
        return d or 1

    def rewrite(self, node, p, q, w_shape, dtype):
        a = attrs(node)
        base, qn, pn = _names(node)
        mid = f"{node.output[0]}/lowrank"
        first = helper.make_node("Gemm", [node.input[0], qn], [mid], name=f"{base}/lowrank_a", alpha=float(a.get("alpha", 1.0)), transA=int(a.get("transA", 0)), transB=1)
        second_inputs = [mid, pn] + ([node.input[2]] if len(node.input) > 2 and node.input[2] else [])
        second = helper.make_node("Gemm", second_inputs, list(node.output), name=f"{base}/lowrank_b", beta=float(a.get("beta", 1.0)), transB=1)
        return Rewrite([first, second], [_tensor(q, qn, dtype), _tensor(p, pn, dtype)])


@register_rule("Conv")
class ConvRule:
    """Conv K x C x k... (group 1): an r-channel conv with the same stride, pads and dilation,
    then a 1x1 conv r -> K carrying the bias."""

    def weight_name(self, node, info):
        return node.input[1]

    def skip_reason(self, node, info):
        group = int(attrs(node).get("group", 1))
        if group != 1:
            return f"grouped convolution (group={group}); only group=1 is factorised"
        return _constant_reason(node.input[1], info, "weight")

    def matrix(self, node, w):
        return w.reshape(w.shape[0], -1)

    def from_matrix(self, node, m, like):
        return m.reshape(like.shape)

    def positions(self, node, info):
        return info.per_sample(node.output[0], slice(2, None))

    def rewrite(self, node, p, q, w_shape, dtype):
        base, qn, pn = _names(node)
        spatial = tuple(w_shape[2:])
        kept = {k: v for k, v in attrs(node).items() if k != "group"}
        kept["kernel_shape"] = list(spatial)
        mid = f"{node.output[0]}/lowrank"
        r = q.shape[0]
        first = helper.make_node("Conv", [node.input[0], qn], [mid], name=f"{base}/lowrank_a", **kept)
        second_inputs = [mid, pn] + ([node.input[2]] if len(node.input) > 2 and node.input[2] else [])
        second = helper.make_node("Conv", second_inputs, list(node.output), name=f"{base}/lowrank_b", kernel_shape=[1] * len(spatial))
        return Rewrite(
            [first, second],
            [_tensor(q.reshape((r, w_shape[1]) + spatial), qn, dtype), _tensor(p.reshape(p.shape + (1,) * len(spatial)), pn, dtype)],
        )
