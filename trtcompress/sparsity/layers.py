"""Which layers carry prunable weights, along which axis, and whether TensorRT can run them sparse.

A registry keyed by ONNX op type: each rule finds the weight input of a node, its reduction axis
(the axis a sparse Tensor Core groups 4 by 4) and the axis of the activation's channels.

TensorRT's documented constraints (Developer Guide 8.5, section "Sparsity"; the builder logs
"Layers eligible for sparse math" for Conv and MatMul layers, NVIDIA/TensorRT#2169):
convolution and fully-connected / matrix-multiply weights, known at build time, where for every
output channel and kernel position each group of 4 input channels holds at least 2 zeros; the
input channel count must be a multiple of 4; the engine must be built with SPARSE_WEIGHTS and
FP16 or INT8. TensorRT does not consider sparse kernels for grouped or depthwise convolutions
(NVIDIA/TensorRT#4054), and picks a sparse kernel only where it times faster, in practice when
input and output channels are large, about 256 or more (NVIDIA/TensorRT#3849, #4065; a 3x3 kernel
multiplies the effective input channels by 9).
"""
from __future__ import annotations

import dataclasses
from typing import Callable

from typing import TYPE_CHECKING

import numpy as np

from .graph import Constants, WeightSource, attr, layer_name, node_input, resolve_weight
from .masks import GROUP

if TYPE_CHECKING:
    import onnx_ir as ir

__all__ = ["LayerView", "register_layer_rule", "layer_rules", "view_layer", "trt_ineligibility", "SPEEDUP_CHANNELS"]

SPEEDUP_CHANNELS = 256  # below this, TensorRT's dense kernels usually win (see module docstring)


@dataclasses.dataclass
class LayerView:
    """A compute node seen as a weighted layer."""

    node: ir.Node
    weight_index: int
    weight: WeightSource
    reduction_axis: int  # axis of the weight grouped 4 by 4 (input channels)
    output_axis: int  # axis of the weight indexing output channels
    groups: int = 1
    data_index: int = 0  # input index of the activation
    data_channel_axis: int | None = 1  # channel axis of the activation (None: cannot permute)
    note: str = ""  # why the activation cannot be permuted, when data_channel_axis is None

    @property
    def name(self) -> str:
        return layer_name(self.node)

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(int(d) for d in self.weight.values.shape)

    @property
    def in_channels(self) -> int:
        return self.shape[self.reduction_axis]

    @property
    def out_channels(self) -> int:
        return self.shape[self.output_axis] * (self.groups if self.node.op_type == "ConvTranspose" else 1)

    @property
    def kernel_size(self) -> int:
        n = 1
        for i, d in enumerate(self.shape):
            if i not in (self.reduction_axis, self.output_axis):
                n *= d
        return n


Rule = Callable[[Constants, "ir.Node"], "LayerView | str"]
_RULES: dict[str, Rule] = {}
_PRUNABLE: list[str] = []


def register_layer_rule(op_type: str, prunable: bool = True) -> Callable[[Rule], Rule]:
    """Register how ``op_type`` is seen as a layer; ``prunable=False`` for ops that are only
    inspected (the integer operators of ONNX Runtime's CPU form)."""
    def deco(fn: Rule) -> Rule:
        _RULES[op_type] = fn
        if prunable:
            _PRUNABLE.append(op_type)
        return fn

    return deco


def layer_rules() -> tuple[str, ...]:
    """The op types ``sparsify`` can prune."""
    return tuple(_PRUNABLE)


def view_layer(consts: Constants, node: ir.Node) -> LayerView | str | None:
    """A :class:`LayerView`, a reason string when the node has no prunable weight, or None for ops
    that never carry one."""
    rule = _RULES.get(node.op_type)
    return rule(consts, node) if rule else None


def _not_constant(node: ir.Node, i: int) -> str:
    value = node_input(node, i)
    if value is not None and value.is_graph_input() and value.is_initializer():
        return f"weight {value.name!r} is also a graph input, so it can be overridden at run time; export without keep_initializers_as_inputs"
    return "weights are not constant (computed at run time)"


def _weight(consts: Constants, node: ir.Node, i: int) -> WeightSource | str:
    w = resolve_weight(consts, node, i)
    return _not_constant(node, i) if w is None else w


@register_layer_rule("Conv")
def _conv(consts: Constants, node: ir.Node) -> LayerView | str:
    w = _weight(consts, node, 1)
    if isinstance(w, str):
        return w
    return LayerView(node, 1, w, reduction_axis=1, output_axis=0, groups=int(attr(node, "group", 1)))


@register_layer_rule("ConvTranspose")
def _deconv(consts: Constants, node: ir.Node) -> LayerView | str:
    # weight [C_in, K/group, kernel...]: the sum runs over C_in (axis 0) for each output position
    w = _weight(consts, node, 1)
    if isinstance(w, str):
        return w
    return LayerView(node, 1, w, reduction_axis=0, output_axis=1, groups=int(attr(node, "group", 1)))


@register_layer_rule("Gemm")
def _gemm(consts: Constants, node: ir.Node) -> LayerView | str:
    if resolve_weight(consts, node, 0) is not None and resolve_weight(consts, node, 1) is None:
        return "the constant is operand A, not the weight operand B"
    w = _weight(consts, node, 1)
    if isinstance(w, str):
        return w
    trans_b = int(attr(node, "transB", 0))
    trans_a = int(attr(node, "transA", 0))
    view = LayerView(node, 1, w, reduction_axis=1 if trans_b else 0, output_axis=0 if trans_b else 1)
    if trans_a:
        view.data_channel_axis, view.note = None, "operand A is transposed (transA=1)"
    return view


@register_layer_rule("MatMul")
def _matmul(consts: Constants, node: ir.Node) -> LayerView | str:
    if resolve_weight(consts, node, 1) is None:
        if resolve_weight(consts, node, 0) is not None:
            return "the constant is the left operand, not a weight [K, N]"
        return _not_constant(node, 1)
    w = _weight(consts, node, 1)
    assert not isinstance(w, str)
    if w.values.ndim != 2:
        return f"constant operand has rank {w.values.ndim}; only 2-D weights [K, N] are pruned"
    return LayerView(node, 1, w, reduction_axis=0, output_axis=1, data_channel_axis=-1)


# ONNX Runtime's CPU form (trtcompress.quant.lower_cpu) holds integer weights as plain constants
# read by the integer operators: (weight, scale, zero point) input indices and the axis the scale
# and zero point run along (output channels). ConvInteger and MatMulInteger carry no weight scale:
# their values are compared as integers around the zero point, which is all 2:4 needs.
_INTEGER_OPS = {
    "QLinearConv": (3, 4, 5, 0),
    "ConvInteger": (1, None, 3, 0),
    "QLinearMatMul": (3, 4, 5, 1),
    "MatMulInteger": (1, None, 3, 1),
    "MatMulIntegerToFloat": (1, 3, 5, 1),  # com.microsoft: A, B, a_scale, b_scale, a_zp, b_zp, bias
}


def _integer_layer(consts: Constants, node: ir.Node) -> LayerView | str:
    w_i, scale_i, zp_i, axis = _INTEGER_OPS[node.op_type]
    values = consts.get(node_input(node, w_i))
    if values is None:
        return _not_constant(node, w_i)
    scale = consts.get(node_input(node, scale_i)) if scale_i is not None else np.float32(1.0)
    zp = consts.get(node_input(node, zp_i))
    if scale is None:
        return "weight scale is not constant"
    w = WeightSource("dq", node.inputs[w_i], values, np.asarray(scale), zp, axis, owner=node, owner_index=w_i)
    if node.op_type.endswith("Conv"):
        return LayerView(node, w_i, w, reduction_axis=1, output_axis=0, groups=int(attr(node, "group", 1)), data_channel_axis=None, note="integer CPU form")
    if values.ndim != 2:
        return f"constant operand has rank {values.ndim}; only 2-D weights [K, N] are inspected"
    return LayerView(node, w_i, w, reduction_axis=0, output_axis=1, data_index=0, data_channel_axis=None, note="integer CPU form")


for _op in _INTEGER_OPS:
    register_layer_rule(_op, prunable=False)(_integer_layer)


def trt_ineligibility(view: LayerView) -> str | None:
    """Why TensorRT would not run this layer with sparse kernels (None: eligible)."""
    if view.groups != 1:
        kind = "depthwise" if view.in_channels == 1 else "grouped"
        return f"{kind} convolution (group={view.groups}): TensorRT has no sparse kernels for it"
    if view.in_channels % GROUP:
        return f"input channels {view.in_channels} not a multiple of {GROUP}"
    return None
