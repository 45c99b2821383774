"""Factorisation rules for ONNX ops, registered by op type, on onnx-ir nodes.

A rule names a node's weight, reads it as an ``out x in`` matrix ``M``, says how many output
positions the node computes per sample (from the shapes of its values), writes a weight back from a
matrix (used to measure the error of a truncated weight), and builds the two nodes that replace the
node from factors ``p`` (out x r) and ``q`` (r x in) with ``p @ q ~= M``: the first applies ``q``,
the second ``p`` and the bias. Adding an op is one class and one registration.

onnx-ir is imported by the methods that use it (``import trtcompress`` stays without it).
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Callable, Protocol

import numpy as np

from .flops import dims

if TYPE_CHECKING:
    import onnx_ir as ir

__all__ = ["FactorRule", "Constants", "Factor", "register_rule", "get_rule", "registered_rules"]

# registers a factor as an initialiser named after ``name`` and returns its value
Factor = Callable[[str, np.ndarray], "ir.Value"]


class Constants:
    """The constant tensors of a model: initialisers and Constant nodes of the main graph and of
    every If/Loop/Scan body (silero-vad keeps its weights as Constant nodes inside If branches).

    A name defined in more than one graph (as an initialiser or a node output) is not taken as a
    constant: no exporter writes one, which definition a reader sees is a matter of scope, and the
    layer staying dense is the safe answer (as in the protobuf version of this stage)."""

    def __init__(self, model: ir.Model):
        from ..graph._util import walk_graphs

        seen: set[str] = set()
        self.ambiguous: set[str] = set()
        for graph, _ in walk_graphs(model.graph):
            for name in [*graph.initializers, *(o.name for n in graph for o in n.outputs if o.name)]:
                (self.ambiguous if name in seen else seen).add(name)

    def tensor(self, value: ir.Value | None) -> ir.TensorProtocol | None:
        """The value's constant tensor, also when it is a graph input (see :meth:`array`)."""
        import onnx_ir as ir

        if value is None or value.name in self.ambiguous:
            return None
        try:
            return ir.convenience.get_const_tensor(value)
        except ValueError:  # a malformed Constant node (no or several attributes)
            return None

    def array(self, value: ir.Value | None) -> np.ndarray | None:
        """The value of a constant a user cannot override (not also a graph input); reads it."""
        t = self.tensor(value)
        return None if t is None or value.is_graph_input() else t.numpy()


class FactorRule(Protocol):
    def weight(self, node: ir.Node) -> ir.Value | None: ...

    def skip_reason(self, node: ir.Node, consts: Constants) -> str | None: ...

    def matrix(self, node: ir.Node, w: np.ndarray) -> np.ndarray: ...

    def from_matrix(self, node: ir.Node, m: np.ndarray, like: np.ndarray) -> np.ndarray: ...

    def positions(self, node: ir.Node) -> int | None: ...

    def rewrite(self, node: ir.Node, p: np.ndarray, q: np.ndarray, w_shape: tuple[int, ...], factor: Factor) -> list[ir.Node]: ...


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


def _names(node: ir.Node) -> tuple[str, str, str]:
    base = node.name or node.outputs[0].name
    return base, f"{base}/lowrank_q", f"{base}/lowrank_p"


def _pair(node: ir.Node, first: tuple[str, list, dict], second: tuple[str, list, dict]) -> list[ir.Node]:
    """The two nodes replacing ``node``: ``first`` reads its inputs, ``second`` reads the first's
    output (named ``<output>/lowrank``) and takes the place of ``node``'s output. Attributes are
    written sorted by name (as onnx.helper.make_node wrote them)."""
    import onnx_ir as ir

    base = _names(node)[0]
    op, inputs, attrs = first
    a = ir.node(op, inputs, dict(sorted(attrs.items())), name=f"{base}/lowrank_a")
    a.outputs[0].name = f"{node.outputs[0].name}/lowrank"
    op, inputs, attrs = second
    b = ir.node(op, [a.outputs[0], *inputs], dict(sorted(attrs.items())), name=f"{base}/lowrank_b")
    return [a, b]


def _constant_reason(value: ir.Value | None, consts: Constants, role: str) -> str | None:
    import onnx_ir as ir

    name = value.name if value is not None else ""
    t = consts.tensor(value)
    if t is None:
        return f"{role} {name!r} is not a constant initialiser"
    if value.is_graph_input():
        return f"{role} {name!r} is a graph input (it can be overridden at run time)"
    if t.dtype not in (ir.DataType.FLOAT, ir.DataType.FLOAT16, ir.DataType.DOUBLE):
        return f"{role} {name!r} is not floating point"
    return None


def _bias(node: ir.Node) -> list:
    return [node.inputs[2]] if len(node.inputs) > 2 and node.inputs[2] is not None else []


def _float(node: ir.Node, name: str, default: float) -> float:
    attr = node.attributes.get(name)
    return default if attr is None else float(attr.as_float())


def _int(node: ir.Node, name: str, default: int) -> int:
    from ..graph._util import int_attr

    return int_attr(node, name, default)


def _per_sample(value: ir.Value | None, sel: slice) -> int | None:
    """Product of the value's dimensions in ``sel``, a dynamic dimension counting as 1 (batch)."""
    shape = dims(value)
    if shape is None:
        return None
    return int(np.prod([d if d is not None else 1 for d in shape[sel]], dtype=np.int64))


@register_rule("MatMul")
class MatMulRule:
    """``Y = X @ W`` with a constant 2-D ``W`` (K x N): ``X @ q.T`` then ``@ p.T``."""

    def weight(self, node):
        return node.inputs[1]

    def skip_reason(self, node, consts):
        if consts.tensor(node.inputs[0]) is not None and consts.tensor(node.inputs[1]) is None:
            return "the constant is the left operand (W @ X); only X @ W is factorised"
        reason = _constant_reason(node.inputs[1], consts, "weight")
        if reason:
            return reason
        rank = len(consts.tensor(node.inputs[1]).shape)
        if rank != 2:
            return f"weight has rank {rank}; only 2-D weights are factorised"
        return None

    def matrix(self, node, w):
        return w.T

    def from_matrix(self, node, m, like):
        return m.T

    def positions(self, node):
        return _per_sample(node.inputs[0], slice(None, -1))

    def rewrite(self, node, p, q, w_shape, factor):
        _, qn, pn = _names(node)
        return _pair(node, ("MatMul", [node.inputs[0], factor(qn, q.T)], {}), ("MatMul", [factor(pn, p.T)], {}))


@register_rule("Gemm")
class GemmRule:
    """``Y = alpha op(A) op(B) + beta C`` with a constant ``B``: two Gemms with transB=1."""

    def weight(self, node):
        return node.inputs[1]

    def skip_reason(self, node, consts):
        return _constant_reason(node.inputs[1], consts, "weight")

    def matrix(self, node, w):
        return w if _int(node, "transB", 0) else w.T

    def from_matrix(self, node, m, like):
        return m if _int(node, "transB", 0) else m.T

    def positions(self, node):
        shape = dims(node.inputs[0])
        if shape is None:
            return None
        d = shape[1] if _int(node, "transA", 0) else shape[0]
        return d or 1

    def rewrite(self, node, p, q, w_shape, factor):
        _, qn, pn = _names(node)
        first = {"alpha": _float(node, "alpha", 1.0), "transA": _int(node, "transA", 0), "transB": 1}
        return _pair(node, ("Gemm", [node.inputs[0], factor(qn, q)], first),
                     ("Gemm", [factor(pn, p), *_bias(node)], {"beta": _float(node, "beta", 1.0), "transB": 1}))


@register_rule("Conv")
class ConvRule:
    """Conv K x C x k... (group 1): an r-channel conv with the same stride, pads and dilation,
    then a 1x1 conv r -> K carrying the bias."""

    def weight(self, node):
        return node.inputs[1]

    def skip_reason(self, node, consts):
        group = _int(node, "group", 1)
        if group != 1:
            return f"grouped convolution (group={group}); only group=1 is factorised"
        return _constant_reason(node.inputs[1], consts, "weight")

    def matrix(self, node, w):
        return w.reshape(w.shape[0], -1)

    def from_matrix(self, node, m, like):
        return m.reshape(like.shape)

    def positions(self, node):
        return _per_sample(node.outputs[0], slice(2, None))

    def rewrite(self, node, p, q, w_shape, factor):
        import onnx_ir as ir

        _, qn, pn = _names(node)
        spatial = tuple(w_shape[2:])
        kept = {k: ir.Attr(k, a.type, a.value) for k, a in node.attributes.items() if k != "group"}
        kept["kernel_shape"] = list(spatial)
        r = q.shape[0]
        return _pair(node, ("Conv", [node.inputs[0], factor(qn, q.reshape((r, w_shape[1]) + spatial))], kept),
                     ("Conv", [factor(pn, p.reshape(p.shape + (1,) * len(spatial))), *_bias(node)], {"kernel_shape": [1] * len(spatial)}))
