"""Which quantized layers TensorRT has INT8 kernels for: rules that leave a layer float in the TensorRT form.

A Q/DQ pair on a layer TensorRT has no INT8 implementation for fails the build ("Could not find
any implementation for node ...") or falls back to slow reformats. These rules run on the plan
of the TensorRT form after calibration (the calibration table keeps every tensor, so the same
table still serves the CPU form). Each rule is registered by op type and returns the reason a
node stays float, or None; the reasons land in the plan's ``kept_float`` report.

Adding a rule is one function and one ``@register_kernel_rule`` line; a rule that holds only
for some TensorRT versions asks the :class:`~trtcompress.trt.version.TrtVersion` it is given
(None: no version targeted, so only rules that hold for every version apply).
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Callable

import onnx

from ..trt.version import TrtVersion
from ._ir import View, as_ir, attr, const_shape, is_const
from .placement import QuantPlan

if TYPE_CHECKING:
    import onnx_ir as ir

__all__ = ["register_kernel_rule", "kernel_exclusions", "SMALL_CHANNELS"]

KernelRule = Callable[["ir.Node", View, "TrtVersion | None"], "str | None"]
_KERNEL_RULES: dict[str, list[KernelRule]] = {}

# Model Optimizer's threshold for INT8 Convs (below)
SMALL_CHANNELS = 16


def register_kernel_rule(*op_types: str) -> Callable[[KernelRule], KernelRule]:
    def deco(fn: KernelRule) -> KernelRule:
        for op in op_types:
            _KERNEL_RULES.setdefault(op, []).append(fn)
        return fn

    return deco


def kernel_exclusions(model: "onnx.ModelProto | ir.Model", plan: QuantPlan, version: TrtVersion | None = None) -> dict[str, str]:
    """Quantized nodes of ``plan`` that TensorRT (``version``, or any) has no INT8 kernel for -> why."""
    g = View(as_ir(model))
    out: dict[str, str] = {}
    for name in plan.quantized_nodes:
        node = g.by_name[name]
        for rule in _KERNEL_RULES.get(node.op_type, ()):
            reason = rule(node, g, version)
            if reason:
                out[name] = reason
                break
    return out


def _conv_weight_shape(node: "ir.Node") -> tuple[int, ...] | None:
    """The constant weight's shape (read from the tensor's header: the weight is not loaded)."""
    return const_shape(node.inputs[1]) if len(node.inputs) > 1 else None


@register_kernel_rule("Conv")
def _small_channel_conv(node: "ir.Node", g: View, version: TrtVersion | None) -> str | None:
    """Model Optimizer's INT8 rule, ``find_nodes_from_convs_to_exclude`` in
    ``modelopt/onnx/quantization/graph_utils.py`` (NVIDIA/Model-Optimizer a2fbac7, applied by default
    in ``modelopt/onnx/quantization/int8.py`` unless autotuning or targeting DLA), for every TensorRT
    version: with weight ``[OC, IC/group, k...]``, a Conv with OC < 16 or IC/group < 16 stays float
    unless either
      - group == 1, OC or IC divisible by 8, it reads a graph input or OC or IC >= 16, and its
        kernel is square (all kernel dimensions equal); or
      - group > 1 (grouped / depthwise), OC divisible by 8 and every kernel dimension >= 3."""
    shape = _conv_weight_shape(node)
    if shape is None or len(shape) < 3:
        return None
    oc, ic = shape[0], shape[1]
    if oc >= SMALL_CHANNELS and ic >= SMALL_CHANNELS:
        return None
    group = int(attr(node, "group", 1))
    kernel = list(attr(node, "kernel_shape", None) or shape[2:])
    if group == 1:
        reads_input = any(v is not None and v.is_graph_input() and not v.is_initializer() for v in node.inputs)
        if (oc % 8 == 0 or ic % 8 == 0) and (reads_input or oc >= SMALL_CHANNELS or ic >= SMALL_CHANNELS) and len(set(kernel)) == 1:
            return None
    elif oc % 8 == 0 and all(k >= 3 for k in kernel):
        return None
    return (
        f"small-channel Conv (OC {oc}, IC/group {ic}, group {group}, kernel {'x'.join(map(str, kernel))}): "
        "TensorRT has no INT8 kernel for it (Model Optimizer's < 16 channel rule)"
    )


# activations TensorRT 8.x fuses into an INT8 depthwise Conv (TensorRT#3385: ReLU builds, Swish does not)
_DEPTHWISE_OK_ACT = ("Relu", "Clip")


@register_kernel_rule("Conv")
def _depthwise_conv_8x(node: "ir.Node", g: View, version: TrtVersion | None) -> str | None:
    """TensorRT 8.x: an INT8 depthwise Conv builds only when ReLU / ReLU6 follows it.

    TensorRT#3385 (8.5.2, Jetson AGX Orin): DQ > DwConv > BN > ReLU > Q builds, DQ > DwConv > BN >
    Swish > Q fails with "Could not find any implementation"; TensorRT#4060 (8.6.11, T2000 and AGX
    Orin, open): an explicit-Q/DQ depthwise Conv with no activation fails the same way. Neither is
    reported on 10.x, and Model Optimizer's rule (above) keeps depthwise Convs INT8 on every version,
    so this applies only when 8.x is the target."""
    if version is None or not version.int8_depthwise_needs_relu:
        return None
    shape = _conv_weight_shape(node)
    group = int(attr(node, "group", 1))
    if shape is None or group == 1 or shape[1] != 1:
        return None
    act = _following_activation(node.outputs[0], g)
    if act in _DEPTHWISE_OK_ACT:
        return None
    after = act or "a branch or nothing"
    return f"depthwise Conv not followed by ReLU/ReLU6 (next: {after}): TensorRT {version.major}.x has no INT8 kernel for it (TensorRT#3385, #4060)"


def _following_activation(tensor: "ir.Value", g: View) -> str | None:
    """Op type of the first op after ``tensor`` that is not a folded BN or a constant bias/scale
    (along a single-consumer chain), or None when the output branches or ends."""
    for _ in range(3):
        cons = g.consumers(tensor)
        kinds = sorted(c.op_type for c in cons)
        if kinds in (["Mul", "Sigmoid"], ["HardSigmoid", "Mul"]):  # x * sigmoid(x): Swish, hard-swish
            gate = kinds[1] if kinds[0] == "Mul" else kinds[0]
            return f"{'Swish' if gate == 'Sigmoid' else 'HardSwish'} ({gate}, Mul)"
        if kinds == ["Add", "Mul"] and any(c.op_type == "Add" and any(is_const(i) for i in c.inputs) for c in cons):
            return "HardSwish (x * Clip(x + 3) / 6)"
        if len(cons) != 1:
            return None
        c = cons[0]
        if c.op_type == "BatchNormalization" or (c.op_type in ("Add", "Mul") and any(is_const(i) for i in c.inputs)):
            tensor = c.outputs[0]
            continue
        return c.op_type
    return None
