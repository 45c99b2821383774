"""Carry an input-channel permutation back to the layer that produces those channels.

Permuting the input channels of a layer L (its weight along the reduction axis) leaves the model's
function unchanged if the tensor L reads is permuted the same way, which means permuting the output
channels of the producer P and every per-channel op between P and L (BatchNormalization, bias or
scale constants, depthwise convolutions, pooling). Elementwise activations need nothing.

A registry keyed by op type says, for one node and the channel axis of its output, whether the node
passes channels through (and which of its constants to permute), produces them (the end of the
walk), or blocks the walk. The walk stops, leaving L unpermuted, when any tensor on the way has
another consumer (a residual Add, a Concat, a graph output) or an op is not known to be per-channel.
"""
from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Callable

import numpy as np

from .graph import Constants, attr, layer_name, node_input, resolve_weight

if TYPE_CHECKING:
    import onnx_ir as ir

__all__ = ["ChannelPath", "find_channel_path", "apply_channel_permutation", "register_channel_op"]


@dataclasses.dataclass(frozen=True)
class Pass:
    """The node keeps channels where they are: continue at ``data_input`` with channel axis ``axis``."""

    data_input: int
    axis: int
    rank: int | None
    permute: tuple[tuple[int, int], ...] = ()  # (input index, axis) of constants to permute


@dataclasses.dataclass(frozen=True)
class Source:
    """The node computes the channels from its weights: permute these constants and stop."""

    permute: tuple[tuple[int, int], ...]


@dataclasses.dataclass(frozen=True)
class Blocked:
    reason: str


Step = Pass | Source | Blocked
ChannelRule = Callable[[Constants, "ir.Node", int, "int | None", dict], Step]
_RULES: dict[str, ChannelRule] = {}


def register_channel_op(*op_types: str) -> Callable[[ChannelRule], ChannelRule]:
    def deco(fn: ChannelRule) -> ChannelRule:
        for op in op_types:
            _RULES[op] = fn
        return fn

    return deco


@dataclasses.dataclass
class ChannelPath:
    """The nodes between a layer's input and the producer of its channels, and what to permute."""

    edits: list[tuple[ir.Node, int, int]]  # (node, input index, axis)
    nodes: list[str]


def find_channel_path(
    consts: Constants,
    consumer: ir.Node,
    data_input: int,
    axis: int,
    rank: int | None,
    shapes: dict,
    channels: int,
    max_depth: int = 64,
) -> ChannelPath | str:
    """Walk from ``consumer.inputs[data_input]`` back to the producer; a reason string when blocked."""
    edits: list[tuple[ir.Node, int, int]] = []
    names: list[str] = []
    value, node_after = consumer.inputs[data_input], consumer
    if rank is not None and axis < 0:
        axis += rank
    for _ in range(max_depth):
        assert value is not None
        tensor = value.name
        users = value.uses()
        if value.is_graph_output():
            return f"tensor {tensor!r} is a graph output"
        if len(users) != 1 or users[0].node is not node_after:
            return f"tensor {tensor!r} feeds {len(users)} consumers (residual, concat or shared input)"
        node = value.producer()
        if node is None:
            return f"tensor {tensor!r} is a graph input or constant"
        if any(o.uses() or o.is_graph_output() for o in node.outputs[1:]):
            return f"{node.op_type} {node.name!r} has more than one used output"
        rule = _RULES.get(node.op_type)
        if rule is None:
            return f"{node.op_type} {node.name!r} is not known to be per-channel"
        if axis < 0 and rank is None:
            rank = _rank(shapes, tensor)
            if rank is None:
                return f"rank of {tensor!r} unknown"
            axis += rank
        step = rule(consts, node, axis, rank, shapes)
        if isinstance(step, Blocked):
            return f"{node.op_type} {node.name!r}: {step.reason}"
        for i, ax in step.permute:
            const = consts.get(node_input(node, i))
            if const is None:
                return f"{node.op_type} {node.name!r}: input {i} is not a plain constant"
            if const.shape[ax] != channels:
                return f"{node.op_type} {node.name!r}: input {i} has {const.shape[ax]} entries on axis {ax}, expected {channels}"
            edits.append((node, i, ax))
        names.append(layer_name(node))
        if isinstance(step, Source):
            return ChannelPath(edits, names)
        value, node_after, axis, rank = node.inputs[step.data_input], node, step.axis, step.rank
    return f"no producer within {max_depth} nodes"


def apply_channel_permutation(consts: Constants, path: ChannelPath, perm: np.ndarray) -> None:
    """Permute every constant on ``path`` (new channel i is old channel perm[i])."""
    for node, i, axis in path.edits:
        value = consts.get(node.inputs[i])
        assert value is not None
        consts.set_input(node, i, np.take(value, perm, axis=axis), suffix="perm")


def _rank(shapes: dict, name: str) -> int | None:
    s = shapes.get(name)
    return len(s) if s is not None else None


def _name(value: ir.Value | None) -> str:
    return value.name if value is not None else ""


def _const_axis(value_ndim: int, axis: int, rank: int | None) -> int | None:
    """Axis of a broadcast constant that lines up with tensor ``axis`` (None: not present)."""
    if rank is None:
        return None
    a = axis - (rank - value_ndim)
    return a if a >= 0 else None


# -- elementwise: channels untouched ----------------------------------------------------------
_UNARY = (
    "Relu", "Sigmoid", "Tanh", "LeakyRelu", "Elu", "Selu", "Celu", "HardSigmoid", "HardSwish",
    "Softplus", "Softsign", "Identity", "Neg", "Abs", "Exp", "Log", "Sqrt", "Reciprocal", "Erf",
    "Gelu", "Mish", "ThresholdedRelu", "Cast", "Floor", "Ceil", "Round", "Sign",
)


@register_channel_op(*_UNARY)
def _unary(consts, node, axis, rank, shapes) -> Step:
    return Pass(0, axis, rank)


@register_channel_op("Dropout")
def _dropout(consts, node, axis, rank, shapes) -> Step:
    return Pass(0, axis, rank)


@register_channel_op("Clip")
def _clip(consts, node, axis, rank, shapes) -> Step:
    for bound in node.inputs[1:]:
        if bound is not None:
            v = consts.get(bound)
            if v is None or v.size != 1:
                return Blocked("clip bounds are not scalar constants")
    return Pass(0, axis, rank)


@register_channel_op("Add", "Sub", "Mul", "Div", "PRelu", "Max", "Min")
def _binary(consts, node, axis, rank, shapes) -> Step:
    const_inputs = [i for i, v in enumerate(node.inputs[:2]) if consts.get(v) is not None]
    if len(node.inputs) != 2 or len(const_inputs) != 1:
        return Blocked("needs exactly one constant operand (two run-time operands: residual or gating)")
    ci = const_inputs[0]
    data = 1 - ci
    value = consts.get(node.inputs[ci])
    assert value is not None
    if rank is None:
        return Blocked("rank unknown")
    if value.ndim > rank:
        return Blocked("constant has higher rank than the tensor")
    a = _const_axis(value.ndim, axis, rank)
    permute: tuple[tuple[int, int], ...] = ()
    if a is not None and value.shape[a] != 1:
        permute = ((ci, a),)
    data_rank = _rank(shapes, _name(node.inputs[data])) or rank
    data_axis = axis - (rank - data_rank)
    if data_axis < 0:
        return Blocked("broadcasting adds the channel axis")
    return Pass(data, data_axis, data_rank, permute)


@register_channel_op("BatchNormalization")
def _batchnorm(consts, node, axis, rank, shapes) -> Step:
    if axis != 1:
        return Blocked(f"channels on axis {axis}, BatchNormalization normalises axis 1")
    return Pass(0, axis, rank, tuple((i, 0) for i in range(1, 5)))


@register_channel_op("MaxPool", "AveragePool", "GlobalAveragePool", "GlobalMaxPool", "LpPool", "GlobalLpPool")
def _pool(consts, node, axis, rank, shapes) -> Step:
    if axis != 1:
        return Blocked(f"channels on axis {axis}, pooling keeps axis 1")
    return Pass(0, axis, rank)


@register_channel_op("Pad")
def _pad(consts, node, axis, rank, shapes) -> Step:
    pads = consts.get(node_input(node, 1))
    if pads is None:
        pads_attr = attr(node, "pads", None)
        pads = np.array(pads_attr) if pads_attr is not None else None
    if pads is None:
        return Blocked("pads are not constant")
    if node_input(node, 3) is not None:
        axes = consts.get(node.inputs[3])
        if axes is None or rank is None:
            return Blocked("pad axes are not constant")
        padded = {int(a) % rank for a in axes}
        n = len(axes)
        on_channel = axis in padded and any(
            pads[k] or pads[k + n] for k, a in enumerate(axes) if int(a) % rank == axis
        )
    else:
        n = len(pads) // 2
        on_channel = axis < n and bool(pads[axis] or pads[axis + n])
    if on_channel:
        return Blocked("pads the channel axis")
    return Pass(0, axis, rank)


def _strip_ones(shape) -> tuple:
    s = list(shape)
    while s and s[-1] == 1:
        s.pop()
    return tuple(s)


@register_channel_op("Flatten", "Reshape", "Squeeze", "Unsqueeze")
def _reshape(consts, node, axis, rank, shapes) -> Step:
    """Only reshapes that add or drop trailing 1-dims ([N, C, 1, 1] <-> [N, C]) keep channels put."""
    src, dst = shapes.get(_name(node.inputs[0])), shapes.get(node.outputs[0].name)
    if src is None or dst is None or any(d is None for d in src) or any(d is None for d in dst):
        return Blocked("shapes unknown")
    if _strip_ones(src) != _strip_ones(dst) or axis >= len(_strip_ones(dst)):
        return Blocked(f"reshape {list(src)} -> {list(dst)} moves the channel axis")
    return Pass(0, axis, len(src))


# -- convolutions: depthwise passes channels through, the others produce them ------------------
@register_channel_op("Conv")
def _conv(consts, node, axis, rank, shapes) -> Step:
    if axis != 1:
        return Blocked(f"channels on axis {axis}, Conv writes them on axis 1")
    w = consts.get(node_input(node, 1))
    if w is None:
        return Blocked("weights are not plain constants" + (" (quantized)" if resolve_weight(consts, node, 1) else ""))
    group = int(attr(node, "group", 1))
    bias = ((2, 0),) if node_input(node, 2) is not None else ()
    if group == 1:
        return Source(((1, 0),) + bias)
    if w.shape[1] == 1 and group == w.shape[0]:  # depthwise, one filter per channel
        return Pass(0, 1, w.ndim, ((1, 0),) + bias)
    return Blocked(f"grouped convolution (group={group})")


@register_channel_op("ConvTranspose")
def _deconv(consts, node, axis, rank, shapes) -> Step:
    if axis != 1 or int(attr(node, "group", 1)) != 1:
        return Blocked("grouped ConvTranspose or channels not on axis 1")
    if consts.get(node_input(node, 1)) is None:
        return Blocked("weights are not plain constants")
    bias = ((2, 0),) if node_input(node, 2) is not None else ()
    return Source(((1, 1),) + bias)


@register_channel_op("Gemm")
def _gemm(consts, node, axis, rank, shapes) -> Step:
    if axis != 1:
        return Blocked("Gemm writes channels on axis 1")
    b = consts.get(node_input(node, 1))
    if b is None:
        return Blocked("operand B is not a plain constant")
    edits = [(1, 0 if int(attr(node, "transB", 0)) else 1)]
    if node_input(node, 2) is not None:
        c = consts.get(node.inputs[2])
        if c is None:
            return Blocked("operand C is not constant")
        if c.ndim >= 1 and c.shape[-1] != 1:
            edits.append((2, c.ndim - 1))
    return Source(tuple(edits))


@register_channel_op("MatMul")
def _matmul(consts, node, axis, rank, shapes) -> Step:
    b = consts.get(node_input(node, 1))
    if b is None or b.ndim != 2:
        return Blocked("right operand is not a constant 2-D weight")
    if rank is None or axis != rank - 1:
        return Blocked("MatMul writes channels on the last axis")
    return Source(((1, 1),))


@register_channel_op("ReduceMean", "ReduceMax", "ReduceMin", "ReduceSum", "ReduceL2", "ReduceL1")
def _reduce(consts, node, axis, rank, shapes) -> Step:
    """A reduction over other axes (global average pooling as ReduceMean over H, W) is per-channel."""
    axes = attr(node, "axes", None)
    if axes is None and node_input(node, 1) is not None:
        v = consts.get(node.inputs[1])
        if v is None:
            return Blocked("reduction axes are not constant")
        axes = v.tolist()
    in_rank = _rank(shapes, _name(node.inputs[0]))
    if axes is None or in_rank is None:
        return Blocked("reduction axes or input rank unknown")
    axes = sorted({int(a) % in_rank for a in axes})
    if int(attr(node, "keepdims", 1)):
        in_axis = axis
    else:
        kept = [i for i in range(in_rank) if i not in axes]
        if axis >= len(kept):
            return Blocked("channel axis out of range")
        in_axis = kept[axis]
    if in_axis in axes:
        return Blocked("reduces over the channel axis")
    return Pass(0, in_axis, in_rank)
