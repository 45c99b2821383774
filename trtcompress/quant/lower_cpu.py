"""The CPU lowering (``--target cpu``): the form ONNX Runtime's fast x86 kernels run.

From the same amax values as the TensorRT form: a symmetric int8 activation scale ``s`` maps
exactly onto uint8 with zero point 128 and the same ``s``; a tensor that is non-negative (the
output of ReLU/ReLU6) maps exactly onto uint8 with zero point 0, the same ``s`` and values in
[0, 127] (TensorRT's int8 values of it), or, where every reader takes values up to 255 without
saturating (below), onto zero point 0 and scale amax / 255: the same range on a twice finer grid,
and the uint8 saturation of the producing kernel then is the ReLU/ReLU6, so no Clip node runs.
A symmetric int8 weight ``w`` is stored as int8, or as
uint8 ``w + 128`` with zero point 128. The graph is written in operator form (QLinearConv,
QLinearMatMul, QLinearAdd, ConvInteger/MatMulInteger with a float rescale), so quantized tensors
flow from one integer kernel to the next without float round trips; ReLU/Clip, Pad, MaxPool and
shape ops run directly on uint8 (a monotonic op commutes with quantization at the same scale, so
this is exact).

Saturation: on x86 CPUs without VNNI (AVX2 only), ONNX Runtime's uint8 x int8 GEMM uses
VPMADDUBSW, whose int16 sum of two products saturates when activations reach 255 with full-range
weights (measured here: logits SQNR 2 dB, top-1 5%). Activations in [0, 127] (the zero-point-0
tensors on amax / 127) cannot saturate (2 * 127 * 127 < 32767), so those layers always get int8 weights:
exact and fast. Layers reading a signed tensor (zero point 128) get, by ``weights``: "uint8"
(uint8 x uint8 kernels widen first: exact, slower), "int7" (weights on twice the TensorRT scale,
|q| <= 64: no saturation, fast, 1 bit less weight precision on those layers) or "int8" (for CPUs
with VNNI, where nothing saturates). Depthwise convs always take int8: that kernel widens first.
So a non-negative tensor goes on amax / 255 only where no pointwise reader would lose its int8
weights (with VNNI: everywhere).

Matmuls of two activations (attention's QK^T and AV) stay float here: each needs both inputs
quantized at run time, and on the Fashion ViT those QuantizeLinear ops cost more than the int8
products save (CPU form 1.10x FP32 at batch 32 with them, 1.18x without). A linear layer's bias
Add is folded into its MatMulIntegerToFloat. The TensorRT form quantizes both, as TensorRT's
placement rules ask.
"""
from __future__ import annotations

import dataclasses
from typing import Callable

import numpy as np
import onnx
from onnx import helper, numpy_helper

from ..errors import ConfigError
from ..subgraphs import outer_names
from .graph import GraphIndex, require_opset
from .placement import QuantPlan, WeightSpec
from .qdq_trt import bias_and_input_scale
from .scales import TINY_AMAX, quantize_weight, weight_scales
from .table import CalibrationTable

__all__ = ["lower_cpu", "register_cpu_rule", "CPU_WEIGHT_TYPES", "CPU_LAYER_RULES", "CpuLowering", "cpu_has_vnni"]

CPU_WEIGHT_TYPES = ("auto", "uint8", "int7", "int8")
# Which planned layers the CPU form runs in integer: "auto" keeps float where INT8 does not pay
# (below), "all" lowers every planned layer it has a kernel for.
CPU_LAYER_RULES = ("auto", "all")
# Measured by benchmarks/cpu_int8_layers.py (benchmarks/RESULTS.md, "Does INT8 pay per layer"):
# a conv that writes uint8 (QLinearConv) is at least even with float once it reads and writes
# uint8 neighbours (depthwise 0.87x-1.13x with the Q/DQ of a lone layer around it, dense 3x3 from
# 16 channels 1.07x-1.92x), and keeping one float between integer layers adds a DequantizeLinear
# and a QuantizeLinear (EfficientNet-Lite0 with its depthwise convs float: 0.42x FP32 instead of
# 1.50x). A conv whose output must stay float (a float graph output, or no calibrated range) runs
# ConvInteger with a float rescale instead, a generic kernel: depthwise 0.10x-0.50x of float, dense
# 0.47x-1.14x, break-even only from about 1024 multiply-adds per output. Those stay float.
# A static rule, not a timing at quantize time: the quantized model is byte-identical on every
# machine and under any load.
CONV_INTEGER_MIN_MACS = 1024


def cpu_has_vnni() -> bool:
    """True on x86 CPUs with AVX-512 VNNI or AVX-VNNI (uint8 x int8 cannot saturate there)."""
    try:
        with open("/proc/cpuinfo") as f:
            flags = f.read()
    except OSError:
        return False
    return any(f in flags for f in (" avx512_vnni", " avx_vnni", " amx_int8"))


def resolve_weight_type(weights: str) -> str:
    """``auto``: int8 where VNNI makes it safe, else int7."""
    if weights == "auto":
        return "int8" if cpu_has_vnni() else "int7"
    return weights
_MS = "com.microsoft"

# ops that commute with quantization at one scale: they run on uint8 unchanged
_PASS_THROUGH = ("Reshape", "Flatten", "Transpose", "Squeeze", "Unsqueeze", "Identity", "MaxPool")
# ops whose output range can be given to their input (monotonic or shape-only, single input)
_BACKWARD = _PASS_THROUGH + ("Clip", "Relu", "Pad")


@dataclasses.dataclass(frozen=True)
class U8:
    """A uint8 tensor: its name, amax, zero point (0 or 128) and the quantized value of amax."""

    name: str
    amax: float
    zp: int
    qmax: int = 127

    @property
    def scale(self) -> float:
        return max(self.amax, TINY_AMAX) / self.qmax


@dataclasses.dataclass
class CpuLowering:
    """The lowered model and what was written, for the report."""

    model: onnx.ModelProto
    signed_input_weights: str
    ops: dict[str, int]
    weight_types: dict[str, int]
    float_layers: list[str]  # planned layers this form runs in float (attention products, unsupported shapes)
    kept_float: dict[str, str] = dataclasses.field(default_factory=dict)  # layer -> why INT8 does not pay for it here


class _Ctx:
    """Emission state: which tensors exist as float, which as uint8 (and at which scale)."""

    def __init__(self, model: onnx.ModelProto, plan: QuantPlan, table: CalibrationTable, weights: str, layer_rule: str = "auto"):
        self.g = GraphIndex(model)
        self.plan, self.table, self.weights, self.layer_rule = plan, table, weights, layer_rule
        self.kept_float: dict[str, str] = {}
        self.wspec: dict[tuple[str, int], WeightSpec] = {(w.node, w.index): w for w in plan.weights}
        self.planned = set(plan.quantized_nodes)
        self.amax: dict[str, float] = {t: float(table.amax[t]) for t in plan.activation_tensors if t in table.amax}
        self.nonneg: set[str] = set()
        self.full: set[str] = set()  # non-negative tensors stored on 0..255 (else 0..127)
        self.nodes: list[onnx.NodeProto] = []
        self.inits: dict[str, onnx.TensorProto] = {}
        self.floats: set[str] = set(self.g.graph_inputs) | set(self.g.initializers)
        self.u8: dict[str, U8] = {}
        self.counts: dict[str, int] = {}
        self.weight_types: dict[str, int] = {}
        self.absorbed: set[str] = set()  # nodes a rule folded into the node it emitted
        self.float_out = _float_outputs(self.g, model, plan)

    def writes_u8(self, t: str) -> bool:
        """Whether the op producing ``t`` may write it as uint8: it has a range and is not (an alias
        of) a graph output kept float."""
        return t in self.amax and t not in self.float_out

    # -- helpers --
    def const(self, value: np.ndarray, name: str) -> str:
        self.inits[name] = numpy_helper.from_array(np.asarray(value), name)
        return name

    def zp(self, zp: int) -> str:
        return self.const(np.array(zp, np.uint8), f"trtcompress_u8_zero_point_{zp}")

    def scale(self, u: U8, name: str) -> str:
        return self.const(np.array(u.scale, np.float32), name)

    def emit(self, op: str, inputs: list[str], outputs: list[str], name: str, domain: str = "", **attrs) -> None:
        self.nodes.append(helper.make_node(op, inputs, outputs, name=name, domain=domain or None, **attrs))
        self.counts[op] = self.counts.get(op, 0) + 1

    def can_u8(self, t: str) -> bool:
        return t in self.u8 or (t in self.amax and self.g.is_float(t) and not self.g.is_const(t))

    def as_u8(self, t: str) -> U8:
        """The uint8 version of ``t``, quantizing the float tensor on first use."""
        if t not in self.u8:
            u = self.u8_type(t, f"{t}__u8")
            raw = u.name if u.zp + u.qmax == 255 else f"{t}__u8_unclipped"
            self.emit("QuantizeLinear", [self.as_float(t), self.scale(u, f"{t}__u8_scale"), self.zp(u.zp)], [raw], f"{t}__u8_QuantizeLinear")
            if raw != u.name:  # TensorRT saturates at int8 127
                self.emit("Clip", [raw, self.zp(0), self.const(np.array(127, np.uint8), "trtcompress_u8_127")], [u.name], f"{t}__u8_Clip")
            self.u8[t] = u
        return self.u8[t]

    def u8_type(self, t: str, name: str) -> U8:
        """Signed: zero point 128. Non-negative: zero point 0 with amax at 127 (TensorRT's values),
        or at 255 where every reader takes that range (the uint8 saturation is then the ReLU/clip)."""
        if t in self.nonneg:
            return U8(name, self.amax[t], 0, 255 if t in self.full else 127)
        return U8(name, self.amax[t], 128)

    def as_float(self, t: str) -> str:
        """The float version of ``t``, dequantizing the uint8 tensor on first use."""
        if t in self.floats or not t:
            return t
        u = self.u8[t]
        self.emit("DequantizeLinear", [u.name, self.scale(u, f"{t}__dq_scale"), self.zp(u.zp)], [t], f"{t}__DequantizeLinear")
        self.floats.add(t)
        return t

    def out_u8(self, t: str) -> U8:
        """The uint8 output of a quantized op (zero point 0 when ``t`` is known non-negative)."""
        u = self.u8_type(t, f"{t}__u8")
        self.u8[t] = u
        return u

    def weight(self, node: onnx.NodeProto, index: int, x: U8, transpose: bool = False) -> tuple[str, str, str, np.ndarray] | None:
        """Quantized weight initializer, scale and zero point (names), and the scale values."""
        spec = self.wspec.get((node.name, index))
        if spec is None:
            return None
        w = self.g.const_value(spec.tensor)
        if w is None or w.dtype != np.float32:
            return None
        mode = self.weight_type(node, x)
        scale = np.asarray(weight_scales(w, spec.axis, *bias_and_input_scale(self.g, self.plan, self.table, spec)), np.float32)
        if mode == "int7":
            scale = (scale * 2).astype(np.float32)  # |q| <= 64: a pair of products fits int16
        q = quantize_weight(w, scale, spec.axis)
        if transpose:
            q = q.T
        base = f"{node.name}__w{index}"
        if mode == "uint8":
            qv, zv = (q.astype(np.int16) + 128).astype(np.uint8), np.full(np.shape(scale), 128, np.uint8)
        else:
            qv, zv = q, np.zeros(np.shape(scale), np.int8)
        self.weight_types[mode] = self.weight_types.get(mode, 0) + 1
        return self.const(qv, f"{base}_q"), self.const(scale, f"{base}_scale"), self.const(zv, f"{base}_zero_point"), scale

    def weight_type(self, node: onnx.NodeProto, x: U8) -> str:
        if _depthwise(node, self) or 2 * (x.zp + x.qmax) * 127 <= 32767:  # a pair of products fits int16
            return "int8"
        return self.weights

    def float_node(self, node: onnx.NodeProto) -> None:
        n = onnx.NodeProto()
        n.CopyFrom(node)
        del n.input[:]
        n.input.extend([self.as_float(i) for i in node.input])
        for t in sorted(outer_names(node)):  # a subgraph reads the outer tensor by its name
            if t in self.u8:
                self.as_float(t)
        self.nodes.append(n)
        self.floats.update(o for o in node.output if o)


CpuRule = Callable[[onnx.NodeProto, _Ctx], bool]
_CPU_RULES: dict[str, CpuRule] = {}


def register_cpu_rule(*op_types: str) -> Callable[[CpuRule], CpuRule]:
    """Register how ``op_types`` run on uint8; a rule returns False to leave the node float."""

    def deco(fn: CpuRule) -> CpuRule:
        for op in op_types:
            _CPU_RULES[op] = fn
        return fn

    return deco


def lower_cpu(model: onnx.ModelProto, plan: QuantPlan, table: CalibrationTable, weights: str = "auto", layer_rule: str = "auto") -> CpuLowering:
    """Write the operator-form uint8 model from ``plan`` and ``table``.

    ``weights`` is the weight type of layers that read a signed tensor (see the module docstring).
    ``layer_rule``: "auto" keeps float the layers where INT8 is slower on CPU (``_int8_pays``),
    "all" lowers every planned layer.
    """
    if weights not in CPU_WEIGHT_TYPES:
        raise ConfigError(f"CPU weight type must be one of {', '.join(CPU_WEIGHT_TYPES)}, got {weights!r}")
    if layer_rule not in CPU_LAYER_RULES:
        raise ConfigError(f"CPU layer rule must be one of {', '.join(CPU_LAYER_RULES)}, got {layer_rule!r}")
    weights = resolve_weight_type(weights)
    require_opset(model, 13)
    ctx = _Ctx(model, plan, table, weights, layer_rule)
    _propagate_backward(ctx)
    _find_nonnegative(ctx)
    _find_full_range(ctx)
    float_layers = []
    for node in ctx.g.nodes:
        if node.name in ctx.absorbed:
            continue
        rule = _CPU_RULES.get(node.op_type)
        if not (rule and rule(node, ctx)):
            ctx.float_node(node)
            if node.name in ctx.planned:
                float_layers.append(node.name)
    _store_outputs_u8(ctx)
    for o in model.graph.output:
        ctx.as_float(o.name)
    out = onnx.ModelProto()
    out.CopyFrom(model)
    del out.graph.node[:]
    out.graph.node.extend(ctx.nodes)
    used = {i for n in ctx.nodes for i in n.input} | {i for n in ctx.nodes for i in outer_names(n)}
    keep = [t for t in out.graph.initializer if t.name in used]
    del out.graph.initializer[:]
    out.graph.initializer.extend(keep + [t for name, t in ctx.inits.items() if name in used])
    del out.graph.value_info[:]
    if not any(o.domain == _MS for o in out.opset_import):
        out.opset_import.append(helper.make_opsetid(_MS, 1))
    return CpuLowering(out, weights, dict(sorted(ctx.counts.items())), ctx.weight_types, float_layers, ctx.kept_float)


def _int8_pays(node: onnx.NodeProto, ctx: _Ctx) -> bool:
    """Whether this planned conv runs faster in integer than in float on CPU (the rule above);
    records why not."""
    if ctx.layer_rule == "all" or ctx.writes_u8(node.output[0]):
        return True
    w = ctx.g.const_value(node.input[1])
    if w is None:
        return True  # no constant weight: the conv rule leaves it float anyway
    macs = int(np.prod(w.shape[1:]))  # per output element: in-channels per group x kernel
    if _depthwise(node, ctx):
        why = "depthwise conv with a float output: ONNX Runtime's ConvInteger measured 0.10-0.50x the float conv"
    elif macs < CONV_INTEGER_MIN_MACS:
        why = f"conv with a float output and {macs} multiply-adds per output (< {CONV_INTEGER_MIN_MACS}): ConvInteger measured slower than float"
    else:
        return True
    ctx.kept_float[node.name] = why
    return False


def _store_outputs_u8(ctx: _Ctx) -> None:
    """Opt-in (``quantize_outputs``): a graph output a float op wrote goes through uint8 too."""
    for t in ctx.plan.output_tensors:
        if t in ctx.u8 or t not in ctx.amax:
            continue
        raw = f"{t}__float"
        for n in ctx.nodes:
            n.output[:] = [raw if o == t else o for o in n.output]
        ctx.floats.discard(t)
        ctx.floats.add(raw)
        u = ctx.u8_type(t, f"{t}__u8")
        ctx.emit("QuantizeLinear", [raw, ctx.scale(u, f"{t}__u8_scale"), ctx.zp(u.zp)], [u.name], f"{t}__u8_QuantizeLinear")
        ctx.u8[t] = u


def _float_outputs(g: GraphIndex, model: onnx.ModelProto, plan: QuantPlan) -> set[str]:
    """Graph outputs that stay float (all but ``plan.output_tensors``), and the tensors that reach
    one through ops that would run on uint8 (ReLU, Pad, reshapes): their producer writes float, so
    the output keeps the precision of the integer accumulator, not an 8-bit calibrated range."""
    quantized = set(plan.output_tensors)
    todo = [o.name for o in model.graph.output if o.name not in quantized]
    keep: set[str] = set()
    while todo:
        t = todo.pop()
        if t in keep:
            continue
        keep.add(t)
        p = g.producer.get(t)
        if p is not None and p.op_type in _BACKWARD and p.input and g.is_float(p.input[0]) and not g.is_const(p.input[0]):
            todo.append(p.input[0])
    return keep


def _propagate_backward(ctx: _Ctx) -> None:
    """Give a tensor the range of its only consumer's output when that consumer commutes with Q."""
    g = ctx.g
    for node in reversed(g.nodes):
        if node.op_type not in _BACKWARD or not node.input or node.output[0] not in ctx.amax:
            continue
        src = node.input[0]
        if src in ctx.amax or len(g.consumers_of(src)) != 1 or src in g.graph_outputs or not g.is_float(src) or g.is_const(src):
            continue
        if node.op_type == "Pad" and g.attr(node, "mode", b"constant") not in (b"constant", "constant"):
            continue
        ctx.amax[src] = ctx.amax[node.output[0]]


def _find_nonnegative(ctx: _Ctx) -> None:
    """Tensors that are >= 0 and at most amax once quantized: ReLU/Clip(lo >= 0, hi) outputs, their
    pass-through descendants, and a producer whose only consumer is such a clip (the clip is then
    written on uint8 and restores the exact values)."""
    g = ctx.g
    for node in g.nodes:
        y = node.output[0] if node.output else ""
        if node.op_type in ("Relu", "Clip") and _clip_lo(node, ctx) is not None and _clip_lo(node, ctx) >= 0:
            ctx.nonneg.add(y)
            src = node.input[0]
            if len(g.consumers_of(src)) == 1 and ctx.amax.get(src) == ctx.amax.get(y) and src not in g.graph_outputs:
                ctx.nonneg.add(src)
        elif node.op_type in _PASS_THROUGH and node.input and node.input[0] in ctx.nonneg:
            ctx.nonneg.add(y)
        elif node.op_type == "Pad" and node.input[0] in ctx.nonneg and _pad_value(node, ctx) == 0.0:
            ctx.nonneg.add(y)


def _find_full_range(ctx: _Ctx) -> None:
    """Non-negative tensors whose readers (through clips and shape ops, which alias them) take
    values up to 255 and keep int8 weights: depthwise convs and weightless ops, or any reader with
    VNNI. A pointwise conv or matmul reading 0..255 would need int7 or uint8 weights on AVX2
    (measured on EfficientNet-Lite0 with int7 there: 89.6% top-1 agreement instead of 95.3%)."""
    g = ctx.g

    def takes_full(t: str, depth: int = 0) -> bool:
        for n in g.consumers_of(t):
            if n.op_type in _BACKWARD and n.input[0] == t and depth < 16:
                if not takes_full(n.output[0], depth + 1):
                    return False
            elif ctx.weights != "int8" and (n.name, 1) in ctx.wspec and n.input[0] == t and not _depthwise(n, ctx):
                return False
        return True

    ctx.full = {t for t in ctx.nonneg if takes_full(t)}


def _depthwise(node: onnx.NodeProto, ctx: _Ctx) -> bool:
    """A conv with one input channel per group: ONNX Runtime's kernel widens to int16 first."""
    w = ctx.g.const_value(node.input[1]) if node.op_type == "Conv" and len(node.input) > 1 else None
    shape = () if w is None else w.shape
    return len(shape) >= 3 and shape[1] == 1 and ctx.g.attr(node, "group", 1) == shape[0] > 1


def _clip_lo(node: onnx.NodeProto, ctx: _Ctx) -> float | None:
    return 0.0 if node.op_type == "Relu" else _clip_bound(node, ctx, 1, "min")


def _clip_bound(node: onnx.NodeProto, ctx: _Ctx, index: int, attr: str) -> float | None:
    if len(node.input) > index and node.input[index]:
        v = ctx.g.const_value(node.input[index])
        return None if v is None else float(v)
    v = ctx.g.attr(node, attr)
    return None if v is None else float(v)


def _pad_value(node: onnx.NodeProto, ctx: _Ctx) -> float | None:
    if len(node.input) > 2 and node.input[2]:
        v = ctx.g.const_value(node.input[2])
        return None if v is None else float(v)
    return 0.0


def _q(value: float, u: U8) -> int:
    return int(np.clip(np.rint(value / u.scale) + u.zp, 0, 255))


# -- rules -----------------------------------------------------------------------------------------


def _rescale(ctx: _Ctx, node: onnx.NodeProto, acc: str, scale: np.ndarray, bias: np.ndarray | None, y: str) -> None:
    """int32 accumulator -> float output: Cast, Mul by input*weight scale, Add the float bias."""
    f = f"{y}__acc_float"
    ctx.emit("Cast", [acc], [f], f"{node.name}__Cast", to=onnx.TensorProto.FLOAT)
    out = y if bias is None else f"{y}__nobias"
    ctx.emit("Mul", [f, ctx.const(np.asarray(scale, np.float32), f"{node.name}__rescale")], [out], f"{node.name}__Mul")
    if bias is not None:
        b = np.asarray(bias, np.float32).reshape(np.shape(scale)) if np.ndim(scale) > 1 else bias
        ctx.emit("Add", [out, ctx.const(np.asarray(b, np.float32), f"{node.name}__bias")], [y], f"{node.name}__Add")
    ctx.floats.add(y)


def _integer_to_float(ctx: _Ctx, node: onnx.NodeProto, au: U8, bq: str, bs: str, bz: str, bias: np.ndarray | None, y: str) -> None:
    """uint8 x int8/uint8 matmul with a float output in one kernel (ONNX Runtime's
    MatMulIntegerToFloat: integer GEMM, scales and bias applied in its epilogue)."""
    inputs = [au.name, bq, ctx.scale(au, f"{node.name}__a_scale"), bs, ctx.zp(au.zp), bz]
    if bias is not None:
        inputs.append(ctx.const(np.asarray(bias, np.float32), f"{node.name}__bias"))
    ctx.emit("MatMulIntegerToFloat", inputs, [y], node.name, domain=_MS)
    ctx.floats.add(y)


def _const_input(node: onnx.NodeProto, ctx: _Ctx, index: int) -> np.ndarray | None:
    return ctx.g.const_value(node.input[index]) if len(node.input) > index and node.input[index] else None


# ONNX Runtime's fast x86 int8 conv (MLAS's symmetric conv: int8 weights with zero point 0) needs
# a multiple of 4 input channels; otherwise a generic im2col path runs, slower than float on an RGB
# stem (about 4x on EfficientNet-Lite0's). Such a conv reads its input padded with zero-point
# channels (their products are 0) against zero weights: EfficientNet-Lite0's stem then takes about
# 0.65x the float conv's time, and the float stem's layout reorder and quantization of its large
# output go away. With uint8 weights (never that kernel) a conv with 2 to 7 channels stays float.
CHANNEL_ALIGN = 4


@register_cpu_rule("Conv")
def _conv(node: onnx.NodeProto, ctx: _Ctx) -> bool:
    x, y = node.input[0], node.output[0]
    if node.name not in ctx.planned or not ctx.can_u8(x) or not _int8_pays(node, ctx):
        return False
    w_float = ctx.g.const_value(node.input[1])
    channels = w_float.shape[1] if w_float is not None and w_float.ndim >= 3 else 0
    pad = -channels % CHANNEL_ALIGN if channels > 1 and ctx.g.attr(node, "group", 1) == 1 else 0  # 1 -> 4: no gain, measured
    if pad and 1 < channels < 2 * CHANNEL_ALIGN and ctx.weight_type(node, ctx.u8.get(x) or ctx.u8_type(x, "")) == "uint8":
        return False
    xu = ctx.as_u8(x)
    w = ctx.weight(node, 1, xu)
    if w is None:
        return False
    wq, ws, wz, wscale = w
    if pad and ctx.inits[wq].data_type == onnx.TensorProto.INT8:
        xu = _pad_channels(ctx, node, xu, pad, w_float.ndim)
        q = numpy_helper.to_array(ctx.inits[wq])
        ctx.const(np.concatenate([q, np.zeros((q.shape[0], pad, *q.shape[2:]), q.dtype)], axis=1), wq)
    attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
    bias = _const_input(node, ctx, 2)
    if ctx.writes_u8(y):
        yu = ctx.out_u8(y)
        inputs = [xu.name, ctx.scale(xu, f"{node.name}__x_scale"), ctx.zp(xu.zp), wq, ws, wz, ctx.scale(yu, f"{node.name}__y_scale"), ctx.zp(yu.zp)]
        if bias is not None:
            b = np.rint(bias.astype(np.float64) / (xu.scale * wscale.astype(np.float64)))
            inputs.append(ctx.const(np.clip(b, -(2**31), 2**31 - 1).astype(np.int32), f"{node.name}__bias_int32"))
        ctx.emit("QLinearConv", inputs, [yu.name], node.name, **attrs)
        return True
    if ctx.inits[wq].data_type != onnx.TensorProto.UINT8:
        # ConvInteger takes uint8 weights only: requantize them on the same grid
        q = numpy_helper.to_array(ctx.inits[wq]).astype(np.int16) + 128
        wq = ctx.const(q.astype(np.uint8), wq + "_u8")
    # ConvInteger takes one weight zero point; every channel's is 128 here, the scales go in the rescale
    wz = ctx.zp(128)
    acc = f"{y}__int32"
    ctx.emit("ConvInteger", [xu.name, wq, ctx.zp(xu.zp), wz], [acc], node.name, **attrs)
    shape = (-1,) + (1,) * (len(ctx.g.shape.get(node.input[1], (0, 0, 0, 0))) - 2)
    _rescale(ctx, node, acc, (xu.scale * wscale).reshape(shape), bias, y)
    return True


def _pad_channels(ctx: _Ctx, node: onnx.NodeProto, xu: U8, pad: int, rank: int) -> U8:
    """``xu`` with ``pad`` more channels (axis 1) holding its zero point."""
    pads = np.zeros(2 * rank, np.int64)
    pads[rank + 1] = pad
    out = dataclasses.replace(xu, name=f"{node.name}__x_padded")
    ctx.emit("Pad", [xu.name, ctx.const(pads, f"{node.name}__channel_pads"), ctx.zp(xu.zp)], [out.name], f"{node.name}__channel_Pad", mode="constant")
    return out


@register_cpu_rule("MatMul")
def _matmul(node: onnx.NodeProto, ctx: _Ctx) -> bool:
    a, b, y = node.input[0], node.input[1], node.output[0]
    if node.name not in ctx.planned or not ctx.can_u8(a):
        return False
    if (node.name, 1) not in ctx.wspec:
        return False  # two activations: float (see the module docstring)
    au = ctx.as_u8(a)
    w = ctx.weight(node, 1, au)
    if w is None:
        return False
    bq, bs, bz, bscale = w
    if ctx.writes_u8(y) and np.ndim(bscale) == 0:
        yu = ctx.out_u8(y)
        ctx.emit(
            "QLinearMatMul",
            [au.name, ctx.scale(au, f"{node.name}__a_scale"), ctx.zp(au.zp), bq, bs, bz, ctx.scale(yu, f"{node.name}__y_scale"), ctx.zp(yu.zp)],
            [yu.name],
            node.name,
        )
        return True
    bias, y = _bias_add(node, ctx, ctx.g.shape.get(b, ())[-1:])
    _integer_to_float(ctx, node, au, bq, bs, bz, bias, y)
    return True


def _bias_add(node: onnx.NodeProto, ctx: _Ctx, columns: tuple[int, ...]) -> tuple[np.ndarray | None, str]:
    """A constant 1-D bias Add that alone reads this MatMul's output, absorbed into the integer
    kernel's epilogue (a transformer's linear layers: one op instead of two); returns the bias and
    the output the kernel then writes."""
    y = node.output[0]
    readers = ctx.g.consumers_of(y)
    if len(readers) != 1 or readers[0].op_type != "Add" or y in ctx.g.graph_outputs:
        return None, y
    add = readers[0]
    other = add.input[1] if add.input[0] == y else add.input[0]
    bias = ctx.g.const_value(other)
    if bias is None or bias.dtype != np.float32 or bias.shape != columns:
        return None, y
    ctx.absorbed.add(add.name)
    return bias, add.output[0]


@register_cpu_rule("Gemm")
def _gemm(node: onnx.NodeProto, ctx: _Ctx) -> bool:
    a, y = node.input[0], node.output[0]
    attrs = {x.name: helper.get_attribute_value(x) for x in node.attribute}
    if node.name not in ctx.planned or not ctx.can_u8(a) or attrs.get("transA", 0) or attrs.get("alpha", 1.0) != 1.0 or attrs.get("beta", 1.0) != 1.0:
        return False
    au = ctx.as_u8(a)
    w = ctx.weight(node, 1, au, transpose=bool(attrs.get("transB", 0)))
    if w is None:
        return False
    bq, bs, bz, _ = w
    bias = _const_input(node, ctx, 2)
    if bias is not None and bias.ndim != 1:
        return False
    _integer_to_float(ctx, node, au, bq, bs, bz, bias, y)
    return True


@register_cpu_rule("Add")
def _add(node: onnx.NodeProto, ctx: _Ctx) -> bool:
    a, b, y = node.input[0], node.input[1], node.output[0]
    if node.name not in ctx.planned or not ctx.writes_u8(y) or not (ctx.can_u8(a) and ctx.can_u8(b)):
        return False
    au, bu = ctx.as_u8(a), ctx.as_u8(b)
    yu = ctx.out_u8(y)
    ctx.emit(
        "QLinearAdd",
        [au.name, ctx.scale(au, f"{node.name}__a_scale"), ctx.zp(au.zp), bu.name, ctx.scale(bu, f"{node.name}__b_scale"), ctx.zp(bu.zp),
         ctx.scale(yu, f"{node.name}__y_scale"), ctx.zp(yu.zp)],
        [yu.name],
        node.name,
        domain=_MS,
    )
    return True


@register_cpu_rule("Clip", "Relu")
def _clip(node: onnx.NodeProto, ctx: _Ctx) -> bool:
    x, y = node.input[0], node.output[0]
    if x not in ctx.u8:
        return False
    xu = ctx.u8[x]
    if ctx.amax.get(y, xu.amax) != xu.amax or y in ctx.float_out:
        return False  # a different output scale (requantize through float), or a float graph output
    lo = _clip_lo(node, ctx)
    hi = None if node.op_type == "Relu" else _clip_bound(node, ctx, 2, "max")
    if y in ctx.nonneg and xu.zp != 0:
        return False  # a zero-point-0 output needs a zero-point-0 input
    qlo = _q(lo, xu) if lo is not None else 0
    qhi = min(_q(hi, xu) if hi is not None else 255, xu.zp + xu.qmax)  # TensorRT saturates at amax
    if qlo == 0 and qhi == 255:  # the uint8 saturation already is this clip: nothing to run
        ctx.u8[y] = xu
        return True
    yu = dataclasses.replace(xu, name=f"{y}__u8")
    ctx.u8[y] = yu
    ctx.emit("Clip", [xu.name, ctx.const(np.array(qlo, np.uint8), f"{node.name}__min"), ctx.const(np.array(qhi, np.uint8), f"{node.name}__max")], [yu.name], node.name)
    return True


@register_cpu_rule("Pad")
def _pad(node: onnx.NodeProto, ctx: _Ctx) -> bool:
    x, y = node.input[0], node.output[0]
    mode = ctx.g.attr(node, "mode", b"constant")
    value = _pad_value(node, ctx)
    if x not in ctx.u8 or y in ctx.float_out or mode not in (b"constant", "constant") or len(node.input) < 2 or not ctx.g.is_const(node.input[1]) or value is None:
        return False
    xu = ctx.u8[x]
    inputs = [xu.name, node.input[1], ctx.const(np.array(_q(value, xu), np.uint8), f"{node.name}__value")] + list(node.input[3:4])
    ctx.u8[y] = dataclasses.replace(xu, name=f"{y}__u8")
    ctx.emit("Pad", inputs, [ctx.u8[y].name], node.name, mode="constant")
    return True


@register_cpu_rule(*_PASS_THROUGH)
def _pass_through(node: onnx.NodeProto, ctx: _Ctx) -> bool:
    x = node.input[0]
    if x not in ctx.u8 or len([o for o in node.output if o]) != 1 or node.output[0] in ctx.float_out:
        return False
    xu = ctx.u8[x]
    n = onnx.NodeProto()
    n.CopyFrom(node)
    n.input[0] = xu.name
    y = node.output[0]
    ctx.u8[y] = dataclasses.replace(xu, name=f"{y}__u8")
    del n.output[:]
    n.output.append(ctx.u8[y].name)
    ctx.nodes.append(n)
    ctx.counts[node.op_type] = ctx.counts.get(node.op_type, 0) + 1
    return True


@register_cpu_rule("GlobalAveragePool", "ReduceMean")
def _global_average_pool(node: onnx.NodeProto, ctx: _Ctx) -> bool:
    """A mean over every spatial axis of an NCHW uint8 tensor is ONNX Runtime's
    QLinearGlobalAveragePool: no dequantize, float mean and requantize in the classifier head."""
    x, y = node.input[0], node.output[0]
    rank = _rank(ctx, x)
    if x not in ctx.u8 or not ctx.writes_u8(y) or rank < 3:
        return False
    keep = 1
    if node.op_type == "ReduceMean":
        axes = _const_input(node, ctx, 1) if len(node.input) > 1 else ctx.g.attr(node, "axes")
        keep = ctx.g.attr(node, "keepdims", 1)
        if axes is None or sorted(int(a) % rank for a in np.ravel(axes)) != list(range(2, rank)):
            return False
    xu, yu = ctx.u8[x], ctx.out_u8(y)
    pooled = yu.name if keep else f"{y}__u8_pooled"
    ctx.emit("QLinearGlobalAveragePool", [xu.name, ctx.scale(xu, f"{node.name}__x_scale"), ctx.zp(xu.zp), ctx.scale(yu, f"{node.name}__y_scale"), ctx.zp(yu.zp)],
             [pooled], node.name, domain=_MS, channels_last=0)
    if not keep:
        ctx.emit("Squeeze", [pooled, ctx.const(np.arange(2, rank, dtype=np.int64), f"{node.name}__axes")], [yu.name], f"{node.name}__Squeeze")
    return True


def _rank(ctx: _Ctx, t: str) -> int:
    """From the value info, else from the conv it comes from (through shape-keeping ops); 0: unknown."""
    if ctx.g.shape.get(t):
        return len(ctx.g.shape[t])
    p = ctx.g.upstream(t, ("Clip", "Relu", "Pad", "MaxPool", "Identity"))
    w = ctx.g.const_value(p.input[1]) if p is not None and p.op_type == "Conv" else None
    return 0 if w is None else w.ndim
