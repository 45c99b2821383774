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
from typing import TYPE_CHECKING, Any, Callable

import numpy as np
import onnx

from ..errors import ConfigError
from .placement import QuantPlan, WeightSpec
from .qdq_trt import bias_and_input_scale
from .scales import TINY_AMAX, quantize_weight, weight_scales
from .table import CalibrationTable

if TYPE_CHECKING:  # onnx-ir is imported when a model is lowered, not with the package
    import onnx_ir as ir

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
    """A uint8 tensor: its name, amax, zero point (0 or 128) and the quantized value of amax;
    ``value`` once a node writes it."""

    name: str
    amax: float
    zp: int
    qmax: int = 127
    value: ir.Value | None = dataclasses.field(default=None, compare=False, repr=False)

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
    layer_weights: dict[str, str] = dataclasses.field(default_factory=dict)  # integer layer -> its weight type (int8, int7, uint8)


def _in(node: ir.Node, i: int) -> str:
    """The name of input ``i`` ("" when absent): the plan and the table speak tensor names."""
    v = node.inputs[i] if len(node.inputs) > i else None
    return v.name if v is not None else ""


def _out(node: ir.Node, i: int = 0) -> str:
    return node.outputs[i].name if len(node.outputs) > i else ""


class _Graph:
    """The main graph as it was before lowering, by tensor name: producers, readers (a node whose
    If/Loop/Scan body reads a tensor reads it), constants, element types and shapes."""

    def __init__(self, graph: ir.Graph):
        self.graph = graph
        self.nodes: list[ir.Node] = list(graph)
        self.by_name = {n.name: n for n in self.nodes}
        self.values: dict[str, ir.Value] = {v.name: v for v in graph.inputs}
        self.values.update(graph.initializers)
        for n in self.nodes:
            self.values.update((o.name, o) for o in n.outputs if o.name)
        self.readers: dict[str, list[ir.Node]] = {}
        for n in self.nodes:
            for v in n.inputs:
                if v is not None:
                    self.readers.setdefault(v.name, []).append(n)
            for name in self.outer_reads(n):
                self.readers.setdefault(name, []).append(n)
        self.output_names = [v.name for v in graph.outputs]
        self.graph_outputs = set(self.output_names)
        self._const: dict[str, np.ndarray | None] = {}

    def outer_reads(self, node: ir.Node) -> list[str]:
        """Main-graph tensors that ``node``'s subgraphs read, sorted by name."""
        found: set[str] = set()
        for sub in _subgraphs(node):
            inner = _walk(sub)
            values = [v for n in inner for v in n.inputs] + list(sub.outputs) + [o for n in inner for g in _subgraphs(n) for o in g.outputs]
            found.update(v.name for v in values if v is not None and self.values.get(v.name) is v)
        return sorted(found)

    def value(self, name: str) -> ir.Value | None:
        return self.values.get(name) if name else None

    def producer(self, name: str) -> ir.Node | None:
        v = self.value(name)
        return None if v is None else v.producer()

    def is_const(self, name: str) -> bool:
        """An initializer that is not a graph input (the user can feed those), or a Constant's output."""
        return self.const_value(name) is not None

    def const_value(self, name: str) -> np.ndarray | None:
        if name not in self._const:
            from ..graph._util import const_array

            self._const[name] = const_array(self.value(name))
        return self._const[name]

    def is_float(self, name: str) -> bool:
        """Float32, or of unknown type."""
        import onnx_ir as ir

        v = self.value(name)
        if v is None or v.type is None:
            return True
        return isinstance(v.type, ir.TensorType) and v.type.dtype == ir.DataType.FLOAT

    def shape(self, name: str) -> tuple[int | None, ...] | None:
        v = self.value(name)
        if v is None or v.shape is None:
            return None
        return tuple(d if isinstance(d, int) else None for d in v.shape)

    def consumers_of(self, name: str) -> list[ir.Node]:
        return self.readers.get(name, [])

    @staticmethod
    def attr(node: ir.Node, name: str, default: Any = None) -> Any:
        a = node.attributes.get(name)
        return default if a is None else a.value

    def upstream(self, name: str, through: tuple[str, ...], depth: int = 8) -> ir.Node | None:
        """The first producer of ``name`` that is not one of the ``through`` op types."""
        for _ in range(depth):
            p = self.producer(name)
            if p is None or p.op_type not in through:
                return p
            name = _in(p, 0)
        return None


class _Ctx:
    """Emission state: which tensors exist as float, which as uint8 (and at which scale), by the
    name the tensor had in the float model."""

    def __init__(self, model: ir.Model, plan: QuantPlan, table: CalibrationTable, weights: str, layer_rule: str = "auto"):
        self.g = _Graph(model.graph)
        self.plan, self.table, self.weights, self.layer_rule = plan, table, weights, layer_rule
        self.kept_float: dict[str, str] = {}
        self.wspec: dict[tuple[str, int], WeightSpec] = {(w.node, w.index): w for w in plan.weights}
        self.planned = set(plan.quantized_nodes)
        self.amax: dict[str, float] = {t: float(table.amax[t]) for t in plan.activation_tensors if t in table.amax}
        self.nonneg: set[str] = set()
        self.full: set[str] = set()  # non-negative tensors stored on 0..255 (else 0..127)
        self.nodes: list[ir.Node] = []  # the lowered graph's nodes, in order: kept float nodes and emitted ones
        self.inits: dict[str, ir.Value] = {}
        self.floats: dict[str, ir.Value] = {v.name: v for v in model.graph.inputs}
        self.floats.update(model.graph.initializers)
        self.u8: dict[str, U8] = {}
        self.counts: dict[str, int] = {}
        self.weight_types: dict[str, int] = {}
        self.layer_weights: dict[str, str] = {}
        self.absorbed: set[str] = set()  # nodes a rule folded into the node it emitted
        self.float_out = _float_outputs(self.g, plan)

    def writes_u8(self, t: str) -> bool:
        """Whether the op producing ``t`` may write it as uint8: it has a range and is not (an alias
        of) a graph output kept float."""
        return t in self.amax and t not in self.float_out

    # -- helpers --
    def const(self, value: np.ndarray, name: str) -> ir.Value:
        """An initializer named ``name`` holding ``value`` (the same name again replaces its content)."""
        import onnx_ir as ir

        tensor = ir.Tensor(np.asarray(value), name=name)  # (ir.tensor's protocol checks cost a third of the lowering)
        v = self.inits.get(name)
        if v is None:
            v = self.inits[name] = ir.Value(name=name, const_value=tensor)
            self.g.graph.register_initializer(v)
        else:
            v.const_value = tensor
        return v

    def zp(self, zp: int) -> ir.Value:
        name = f"trtcompress_u8_zero_point_{zp}"
        return self.inits.get(name) or self.const(np.array(zp, np.uint8), name)

    def scale(self, u: U8, name: str) -> ir.Value:
        return self.const(np.array(u.scale, np.float32), name)

    def emit(self, op: str, inputs: list[ir.Value | None], output: str, name: str, domain: str = "", **attrs: Any) -> ir.Value:
        """Append a node writing the one tensor ``output``; attributes in name order, as onnx.helper writes them."""
        import onnx_ir as ir

        node = ir.node(op, inputs, {k: v for k, v in sorted(attrs.items()) if v is not None}, domain=domain, name=name, outputs=[ir.Value(name=output)])
        self.nodes.append(node)
        self.counts[op] = self.counts.get(op, 0) + 1
        return node.outputs[0]

    def can_u8(self, t: str) -> bool:
        return t in self.u8 or (t in self.amax and self.g.is_float(t) and not self.g.is_const(t))

    def as_u8(self, t: str) -> U8:
        """The uint8 version of ``t``, quantizing the float tensor on first use."""
        if t not in self.u8:
            u = self.u8_type(t, f"{t}__u8")
            raw = u.name if u.zp + u.qmax == 255 else f"{t}__u8_unclipped"
            v = self.emit("QuantizeLinear", [self.as_float(t), self.scale(u, f"{t}__u8_scale"), self.zp(u.zp)], raw, f"{t}__u8_QuantizeLinear")
            if raw != u.name:  # TensorRT saturates at int8 127
                v = self.emit("Clip", [v, self.zp(0), self.u8_127()], u.name, f"{t}__u8_Clip")
            self.u8[t] = dataclasses.replace(u, value=v)
        return self.u8[t]

    def u8_127(self) -> ir.Value:
        return self.inits.get("trtcompress_u8_127") or self.const(np.array(127, np.uint8), "trtcompress_u8_127")

    def u8_type(self, t: str, name: str) -> U8:
        """Signed: zero point 128. Non-negative: zero point 0 with amax at 127 (TensorRT's values),
        or at 255 where every reader takes that range (the uint8 saturation is then the ReLU/clip)."""
        if t in self.nonneg:
            return U8(name, self.amax[t], 0, 255 if t in self.full else 127)
        return U8(name, self.amax[t], 128)

    def as_float(self, t: str) -> ir.Value | None:
        """The float version of ``t``, dequantizing the uint8 tensor on first use."""
        if not t:
            return None
        if t not in self.floats:
            u = self.u8[t]
            self.floats[t] = self.emit("DequantizeLinear", [u.value, self.scale(u, f"{t}__dq_scale"), self.zp(u.zp)], t, f"{t}__DequantizeLinear")
        return self.floats[t]

    def out_u8(self, t: str) -> U8:
        """The uint8 type of a quantized op's output (zero point 0 when ``t`` is known non-negative)."""
        return self.u8_type(t, f"{t}__u8")

    def wrote_u8(self, t: str, u: U8, value: ir.Value) -> None:
        self.u8[t] = dataclasses.replace(u, value=value)

    def weight(self, node: ir.Node, index: int, x: U8, transpose: bool = False) -> tuple[ir.Value, ir.Value, ir.Value, np.ndarray] | None:
        """Quantized weight initializer, scale and zero point, and the scale values."""
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
        self.layer_weights[node.name] = mode
        return self.const(qv, f"{base}_q"), self.const(scale, f"{base}_scale"), self.const(zv, f"{base}_zero_point"), scale

    def weight_type(self, node: ir.Node, x: U8) -> str:
        if _depthwise(node, self) or 2 * (x.zp + x.qmax) * 127 <= 32767:  # a pair of products fits int16
            return "int8"
        return self.weights

    def float_node(self, node: ir.Node) -> None:
        """Keep ``node`` as it is, reading the float versions of its inputs (and of the tensors its
        subgraphs read from this graph)."""
        for i, v in enumerate(node.inputs):
            if v is not None and (f := self.as_float(v.name)) is not v:
                node.replace_input_with(i, f)
        for t in self.g.outer_reads(node):
            if t in self.u8 or t in self.floats:
                _read_inside(node, self.g.values[t], self.as_float(t))
        self.nodes.append(node)
        self.floats.update((o.name, o) for o in node.outputs if o.name)


def _read_inside(node: ir.Node, old: ir.Value, new: ir.Value) -> None:
    """Make ``node``'s subgraphs read ``new`` where they read ``old``."""
    if new is old:
        return
    subs = _subgraphs(node)
    inside = {id(n.graph) for sub in subs for n in _walk(sub)} | {id(sub) for sub in subs}
    for use in list(old.uses()):
        if id(use.node.graph) in inside:
            use.node.replace_input_with(use.idx, new)
    for sub in subs:
        for n in [None, *_walk(sub)]:
            for g in [sub] if n is None else _subgraphs(n):
                for k, o in enumerate(g.outputs):
                    if o is old:
                        g.outputs[k] = new


def _subgraphs(node: ir.Node) -> list[ir.Graph]:
    import onnx_ir as ir

    out: list[ir.Graph] = []
    for attr in node.attributes.values():
        if attr.type == ir.AttributeType.GRAPH:
            out.append(attr.as_graph())
        elif attr.type == ir.AttributeType.GRAPHS:
            out.extend(attr.as_graphs())
    return out


def _walk(graph: ir.Graph) -> list[ir.Node]:
    """Every node of ``graph`` and of the graphs nested in it."""
    import onnx_ir as ir

    return list(ir.traversal.RecursiveGraphIterator(graph))


CpuRule = Callable[["ir.Node", _Ctx], bool]
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
    "all" lowers every planned layer. The model is read and rewritten on onnx-ir: converted once
    in, once out; rules receive ``ir.Node`` s and speak tensor names, as the plan and table do.
    """
    import onnx_ir as ir

    from ..graph._util import require_opset

    if weights not in CPU_WEIGHT_TYPES:
        raise ConfigError(f"CPU weight type must be one of {', '.join(CPU_WEIGHT_TYPES)}, got {weights!r}")
    if layer_rule not in CPU_LAYER_RULES:
        raise ConfigError(f"CPU layer rule must be one of {', '.join(CPU_LAYER_RULES)}, got {layer_rule!r}")
    weights = resolve_weight_type(weights)
    work = ir.from_proto(model)  # a new model: the caller's is never changed
    require_opset(work, 13)
    ctx = _Ctx(work, plan, table, weights, layer_rule)
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
    outputs = [ctx.as_float(t) for t in ctx.g.output_names]
    _rebuild(work, ctx, outputs)
    work.opset_imports.setdefault(_MS, 1)
    _drop_value_info(work.graph)
    out = ir.to_proto(work)
    del out.graph.value_info[:]
    layer_weights = {n: m for n, m in ctx.layer_weights.items() if n not in float_layers}
    return CpuLowering(out, weights, dict(sorted(ctx.counts.items())), ctx.weight_types, float_layers, ctx.kept_float, layer_weights)


def _drop_value_info(graph: ir.Graph) -> None:
    """The lowered model ships without the main graph's value info (as the stage writes it): its
    tensors' types and shapes are forgotten rather than serialized and dropped."""
    for v in [*graph.initializers.values(), *(o for n in graph for o in n.outputs)]:
        if not (v.is_graph_input() or v.is_graph_output()):
            v.type = v.shape = None


def _rebuild(model: ir.Model, ctx: _Ctx, outputs: list[ir.Value]) -> None:
    """The graph becomes ``ctx.nodes`` in emission order, writing ``outputs`` under the original
    outputs' names and types; nothing unused ships (a node nothing reads, an initializer no node
    reads: the float weights of lowered layers)."""
    graph = model.graph
    kept = set(ctx.nodes)
    for node in ctx.g.nodes:
        if node not in kept:  # lowered: it stops reading its inputs
            for i in range(len(node.inputs)):
                node.replace_input_with(i, None)
    graph.remove(ctx.g.nodes)
    graph.extend(ctx.nodes)
    for k, new in enumerate(outputs):
        old = graph.outputs[k]
        if new is not old:
            new.type, new.shape, new.doc_string = old.type, old.shape, old.doc_string
            new.metadata_props.update(old.metadata_props)
            graph.outputs[k] = new
    for node in reversed(list(graph)):  # a rule that quantized an input and then kept its node float
        if not any(o.uses() or o.is_graph_output() for o in node.outputs):
            graph.remove(node, safe=True)
    for name, v in list(graph.initializers.items()):
        if not (v.uses() or v.is_graph_output() or v.is_graph_input()):
            del graph.initializers[name]


def _int8_pays(node: ir.Node, ctx: _Ctx) -> bool:
    """Whether this planned conv runs faster in integer than in float on CPU (the rule above);
    records why not."""
    if ctx.layer_rule == "all" or ctx.writes_u8(_out(node)):
        return True
    w = ctx.g.const_value(_in(node, 1))
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
        if t in ctx.u8 or t not in ctx.amax or t not in ctx.floats or ctx.floats[t].producer() is None:
            continue  # (a graph input passed through keeps its name: it stays float)
        raw = ctx.floats.pop(t)
        raw.name = f"{t}__float"
        u = ctx.u8_type(t, f"{t}__u8")
        ctx.wrote_u8(t, u, ctx.emit("QuantizeLinear", [raw, ctx.scale(u, f"{t}__u8_scale"), ctx.zp(u.zp)], u.name, f"{t}__u8_QuantizeLinear"))


def _float_outputs(g: _Graph, plan: QuantPlan) -> set[str]:
    """Graph outputs that stay float (all but ``plan.output_tensors``), and the tensors that reach
    one through ops that would run on uint8 (ReLU, Pad, reshapes): their producer writes float, so
    the output keeps the precision of the integer accumulator, not an 8-bit calibrated range."""
    quantized = set(plan.output_tensors)
    todo = [t for t in g.output_names if t not in quantized]
    keep: set[str] = set()
    while todo:
        t = todo.pop()
        if t in keep:
            continue
        keep.add(t)
        p = g.producer(t)
        if p is not None and p.op_type in _BACKWARD and _in(p, 0) and g.is_float(_in(p, 0)) and not g.is_const(_in(p, 0)):
            todo.append(_in(p, 0))
    return keep


def _propagate_backward(ctx: _Ctx) -> None:
    """Give a tensor the range of its only consumer's output when that consumer commutes with Q."""
    g = ctx.g
    for node in reversed(g.nodes):
        if node.op_type not in _BACKWARD or not node.inputs or _out(node) not in ctx.amax:
            continue
        src = _in(node, 0)
        if src in ctx.amax or len(g.consumers_of(src)) != 1 or src in g.graph_outputs or not g.is_float(src) or g.is_const(src):
            continue
        if node.op_type == "Pad" and g.attr(node, "mode", "constant") != "constant":
            continue
        ctx.amax[src] = ctx.amax[_out(node)]


def _find_nonnegative(ctx: _Ctx) -> None:
    """Tensors that are >= 0 and at most amax once quantized: ReLU/Clip(lo >= 0, hi) outputs, their
    pass-through descendants, and a producer whose only consumer is such a clip (the clip is then
    written on uint8 and restores the exact values)."""
    g = ctx.g
    for node in g.nodes:
        y = _out(node)
        if node.op_type in ("Relu", "Clip") and _clip_lo(node, ctx) is not None and _clip_lo(node, ctx) >= 0:
            ctx.nonneg.add(y)
            src = _in(node, 0)
            if len(g.consumers_of(src)) == 1 and ctx.amax.get(src) == ctx.amax.get(y) and src not in g.graph_outputs:
                ctx.nonneg.add(src)
        elif node.op_type in _PASS_THROUGH and node.inputs and _in(node, 0) in ctx.nonneg:
            ctx.nonneg.add(y)
        elif node.op_type == "Pad" and _in(node, 0) in ctx.nonneg and _pad_value(node, ctx) == 0.0:
            ctx.nonneg.add(y)


def _find_full_range(ctx: _Ctx) -> None:
    """Non-negative tensors whose readers (through clips and shape ops, which alias them) take
    values up to 255 and keep int8 weights: depthwise convs and weightless ops, or any reader with
    VNNI. A pointwise conv or matmul reading 0..255 would need int7 or uint8 weights on AVX2
    (measured on EfficientNet-Lite0 with int7 there: 89.6% top-1 agreement instead of 95.3%)."""
    g = ctx.g

    def takes_full(t: str, depth: int = 0) -> bool:
        for n in g.consumers_of(t):
            if n.op_type in _BACKWARD and _in(n, 0) == t and depth < 16:
                if not takes_full(_out(n), depth + 1):
                    return False
            elif ctx.weights != "int8" and (n.name, 1) in ctx.wspec and _in(n, 0) == t and not _depthwise(n, ctx):
                return False
        return True

    ctx.full = {t for t in ctx.nonneg if takes_full(t)}


def _depthwise(node: ir.Node, ctx: _Ctx) -> bool:
    """A conv with one input channel per group: ONNX Runtime's kernel widens to int16 first."""
    w = ctx.g.const_value(_in(node, 1)) if node.op_type == "Conv" else None
    shape = () if w is None else w.shape
    return len(shape) >= 3 and shape[1] == 1 and ctx.g.attr(node, "group", 1) == shape[0] > 1


def _clip_lo(node: ir.Node, ctx: _Ctx) -> float | None:
    return 0.0 if node.op_type == "Relu" else _clip_bound(node, ctx, 1, "min")


def _clip_bound(node: ir.Node, ctx: _Ctx, index: int, attr: str) -> float | None:
    if _in(node, index):
        v = ctx.g.const_value(_in(node, index))
        return None if v is None else float(v)
    v = ctx.g.attr(node, attr)
    return None if v is None else float(v)


def _pad_value(node: ir.Node, ctx: _Ctx) -> float | None:
    if _in(node, 2):
        v = ctx.g.const_value(_in(node, 2))
        return None if v is None else float(v)
    return 0.0


def _q(value: float, u: U8) -> int:
    return int(np.clip(np.rint(value / u.scale) + u.zp, 0, 255))


# -- rules -----------------------------------------------------------------------------------------


def _rescale(ctx: _Ctx, node: ir.Node, acc: ir.Value, scale: np.ndarray, bias: np.ndarray | None, y: str) -> None:
    """int32 accumulator -> float output: Cast, Mul by input*weight scale, Add the float bias."""
    f = ctx.emit("Cast", [acc], f"{y}__acc_float", f"{node.name}__Cast", to=onnx.TensorProto.FLOAT)
    out = ctx.emit("Mul", [f, ctx.const(np.asarray(scale, np.float32), f"{node.name}__rescale")], y if bias is None else f"{y}__nobias", f"{node.name}__Mul")
    if bias is not None:
        b = np.asarray(bias, np.float32).reshape(np.shape(scale)) if np.ndim(scale) > 1 else bias
        out = ctx.emit("Add", [out, ctx.const(np.asarray(b, np.float32), f"{node.name}__bias")], y, f"{node.name}__Add")
    ctx.floats[y] = out


def _integer_to_float(ctx: _Ctx, node: ir.Node, au: U8, bq: ir.Value, bs: ir.Value, bz: ir.Value, bias: np.ndarray | None, y: str) -> None:
    """uint8 x int8/uint8 matmul with a float output in one kernel (ONNX Runtime's
    MatMulIntegerToFloat: integer GEMM, scales and bias applied in its epilogue)."""
    inputs = [au.value, bq, ctx.scale(au, f"{node.name}__a_scale"), bs, ctx.zp(au.zp), bz]
    if bias is not None:
        inputs.append(ctx.const(np.asarray(bias, np.float32), f"{node.name}__bias"))
    ctx.floats[y] = ctx.emit("MatMulIntegerToFloat", inputs, y, node.name, domain=_MS)


def _const_input(node: ir.Node, ctx: _Ctx, index: int) -> np.ndarray | None:
    return ctx.g.const_value(_in(node, index)) if _in(node, index) else None


def _attrs(node: ir.Node) -> dict[str, ir.Attr]:
    """``node``'s attributes, to write unchanged on the node replacing it."""
    return dict(node.attributes)


# ONNX Runtime's fast x86 int8 conv (MLAS's symmetric conv: int8 weights with zero point 0) needs
# a multiple of 4 input channels; otherwise a generic im2col path runs, slower than float on an RGB
# stem (about 4x on EfficientNet-Lite0's). Such a conv reads its input padded with zero-point
# channels (their products are 0) against zero weights: EfficientNet-Lite0's stem then takes about
# 0.65x the float conv's time, and the float stem's layout reorder and quantization of its large
# output go away. With uint8 weights (never that kernel) a conv with 2 to 7 channels stays float.
CHANNEL_ALIGN = 4


@register_cpu_rule("Conv")
def _conv(node: ir.Node, ctx: _Ctx) -> bool:
    import onnx_ir as ir

    x, y = _in(node, 0), _out(node)
    if node.name not in ctx.planned or not ctx.can_u8(x) or not _int8_pays(node, ctx):
        return False
    w_float = ctx.g.const_value(_in(node, 1))
    channels = w_float.shape[1] if w_float is not None and w_float.ndim >= 3 else 0
    pad = -channels % CHANNEL_ALIGN if channels > 1 and ctx.g.attr(node, "group", 1) == 1 else 0  # 1 -> 4: no gain, measured
    if pad and 1 < channels < 2 * CHANNEL_ALIGN and ctx.weight_type(node, ctx.u8.get(x) or ctx.u8_type(x, "")) == "uint8":
        return False
    xu = ctx.as_u8(x)
    w = ctx.weight(node, 1, xu)
    if w is None:
        return False
    wq, ws, wz, wscale = w
    if pad and wq.const_value.dtype == ir.DataType.INT8:
        xu = _pad_channels(ctx, node, xu, pad, w_float.ndim)
        q = wq.const_value.numpy()
        ctx.const(np.concatenate([q, np.zeros((q.shape[0], pad, *q.shape[2:]), q.dtype)], axis=1), wq.name)
    bias = _const_input(node, ctx, 2)
    if ctx.writes_u8(y):
        yu = ctx.out_u8(y)
        inputs = [xu.value, ctx.scale(xu, f"{node.name}__x_scale"), ctx.zp(xu.zp), wq, ws, wz, ctx.scale(yu, f"{node.name}__y_scale"), ctx.zp(yu.zp)]
        if bias is not None:
            b = np.rint(bias.astype(np.float64) / (xu.scale * wscale.astype(np.float64)))
            inputs.append(ctx.const(np.clip(b, -(2**31), 2**31 - 1).astype(np.int32), f"{node.name}__bias_int32"))
        ctx.wrote_u8(y, yu, ctx.emit("QLinearConv", inputs, yu.name, node.name, **_attrs(node)))
        return True
    if wq.const_value.dtype != ir.DataType.UINT8:
        # ConvInteger takes uint8 weights only: requantize them on the same grid
        q = wq.const_value.numpy().astype(np.int16) + 128
        wq = ctx.const(q.astype(np.uint8), wq.name + "_u8")
    # ConvInteger takes one weight zero point; every channel's is 128 here, the scales go in the rescale
    wz = ctx.zp(128)
    acc = ctx.emit("ConvInteger", [xu.value, wq, ctx.zp(xu.zp), wz], f"{y}__int32", node.name, **_attrs(node))
    w_shape = ctx.g.shape(_in(node, 1))
    shape = (-1,) + (1,) * (len(w_shape if w_shape is not None else (0, 0, 0, 0)) - 2)
    _rescale(ctx, node, acc, (xu.scale * wscale).reshape(shape), bias, y)
    return True


def _pad_channels(ctx: _Ctx, node: ir.Node, xu: U8, pad: int, rank: int) -> U8:
    """``xu`` with ``pad`` more channels (axis 1) holding its zero point."""
    pads = np.zeros(2 * rank, np.int64)
    pads[rank + 1] = pad
    name = f"{node.name}__x_padded"
    v = ctx.emit("Pad", [xu.value, ctx.const(pads, f"{node.name}__channel_pads"), ctx.zp(xu.zp)], name, f"{node.name}__channel_Pad", mode="constant")
    return dataclasses.replace(xu, name=name, value=v)


@register_cpu_rule("MatMul")
def _matmul(node: ir.Node, ctx: _Ctx) -> bool:
    a, b, y = _in(node, 0), _in(node, 1), _out(node)
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
        ctx.wrote_u8(y, yu, ctx.emit(
            "QLinearMatMul",
            [au.value, ctx.scale(au, f"{node.name}__a_scale"), ctx.zp(au.zp), bq, bs, bz, ctx.scale(yu, f"{node.name}__y_scale"), ctx.zp(yu.zp)],
            yu.name,
            node.name,
        ))
        return True
    bias, y = _bias_add(node, ctx, (ctx.g.shape(b) or ())[-1:])
    _integer_to_float(ctx, node, au, bq, bs, bz, bias, y)
    return True


def _bias_add(node: ir.Node, ctx: _Ctx, columns: tuple[int | None, ...]) -> tuple[np.ndarray | None, str]:
    """A constant 1-D bias Add that alone reads this MatMul's output, absorbed into the integer
    kernel's epilogue (a transformer's linear layers: one op instead of two); returns the bias and
    the output the kernel then writes."""
    y = _out(node)
    readers = ctx.g.consumers_of(y)
    if len(readers) != 1 or readers[0].op_type != "Add" or y in ctx.g.graph_outputs:
        return None, y
    add = readers[0]
    other = _in(add, 1) if _in(add, 0) == y else _in(add, 0)
    bias = ctx.g.const_value(other)
    if bias is None or bias.dtype != np.float32 or bias.shape != columns:
        return None, y
    ctx.absorbed.add(add.name)
    return bias, _out(add)


@register_cpu_rule("Gemm")
def _gemm(node: ir.Node, ctx: _Ctx) -> bool:
    a, y = _in(node, 0), _out(node)
    attr = ctx.g.attr
    if node.name not in ctx.planned or not ctx.can_u8(a) or attr(node, "transA", 0) or attr(node, "alpha", 1.0) != 1.0 or attr(node, "beta", 1.0) != 1.0:
        return False
    au = ctx.as_u8(a)
    w = ctx.weight(node, 1, au, transpose=bool(attr(node, "transB", 0)))
    if w is None:
        return False
    bq, bs, bz, _ = w
    bias = _const_input(node, ctx, 2)
    if bias is not None and bias.ndim != 1:
        return False
    _integer_to_float(ctx, node, au, bq, bs, bz, bias, y)
    return True


@register_cpu_rule("Add")
def _add(node: ir.Node, ctx: _Ctx) -> bool:
    a, b, y = _in(node, 0), _in(node, 1), _out(node)
    if node.name not in ctx.planned or not ctx.writes_u8(y) or not (ctx.can_u8(a) and ctx.can_u8(b)):
        return False
    au, bu = ctx.as_u8(a), ctx.as_u8(b)
    yu = ctx.out_u8(y)
    ctx.wrote_u8(y, yu, ctx.emit(
        "QLinearAdd",
        [au.value, ctx.scale(au, f"{node.name}__a_scale"), ctx.zp(au.zp), bu.value, ctx.scale(bu, f"{node.name}__b_scale"), ctx.zp(bu.zp),
         ctx.scale(yu, f"{node.name}__y_scale"), ctx.zp(yu.zp)],
        yu.name,
        node.name,
        domain=_MS,
    ))
    return True


@register_cpu_rule("Clip", "Relu")
def _clip(node: ir.Node, ctx: _Ctx) -> bool:
    x, y = _in(node, 0), _out(node)
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
    ctx.wrote_u8(y, yu, ctx.emit("Clip", [xu.value, ctx.const(np.array(qlo, np.uint8), f"{node.name}__min"), ctx.const(np.array(qhi, np.uint8), f"{node.name}__max")], yu.name, node.name))
    return True


@register_cpu_rule("Pad")
def _pad(node: ir.Node, ctx: _Ctx) -> bool:
    x, y = _in(node, 0), _out(node)
    value = _pad_value(node, ctx)
    if x not in ctx.u8 or y in ctx.float_out or ctx.g.attr(node, "mode", "constant") != "constant" or not _in(node, 1) or not ctx.g.is_const(_in(node, 1)) or value is None:
        return False
    xu = ctx.u8[x]
    inputs = [xu.value, node.inputs[1], ctx.const(np.array(_q(value, xu), np.uint8), f"{node.name}__value"), *node.inputs[3:4]]
    yu = dataclasses.replace(xu, name=f"{y}__u8")
    ctx.wrote_u8(y, yu, ctx.emit("Pad", inputs, yu.name, node.name, mode="constant"))
    return True


@register_cpu_rule(*_PASS_THROUGH)
def _pass_through(node: ir.Node, ctx: _Ctx) -> bool:
    """The same node on the uint8 tensor (a copy: the float model's node stays as it was)."""
    import onnx_ir as ir

    x, y = _in(node, 0), _out(node)
    if x not in ctx.u8 or len([o for o in node.outputs if o.name]) != 1 or y in ctx.float_out:
        return False
    xu = ctx.u8[x]
    yu = dataclasses.replace(xu, name=f"{y}__u8")
    copy = ir.Node(node.domain, node.op_type, [xu.value, *node.inputs[1:]], attributes=list(node.attributes.values()), overload=node.overload,
                   outputs=[ir.Value(name=yu.name)], version=node.version, name=node.name, doc_string=node.doc_string, metadata_props=dict(node.metadata_props))
    ctx.nodes.append(copy)
    ctx.wrote_u8(y, yu, copy.outputs[0])
    ctx.counts[node.op_type] = ctx.counts.get(node.op_type, 0) + 1
    return True


@register_cpu_rule("GlobalAveragePool", "ReduceMean")
def _global_average_pool(node: ir.Node, ctx: _Ctx) -> bool:
    """A mean over every spatial axis of an NCHW uint8 tensor is ONNX Runtime's
    QLinearGlobalAveragePool: no dequantize, float mean and requantize in the classifier head."""
    x, y = _in(node, 0), _out(node)
    rank = _rank(ctx, x)
    if x not in ctx.u8 or not ctx.writes_u8(y) or rank < 3:
        return False
    keep = 1
    if node.op_type == "ReduceMean":
        axes = _const_input(node, ctx, 1) if len(node.inputs) > 1 else ctx.g.attr(node, "axes")
        keep = ctx.g.attr(node, "keepdims", 1)
        if axes is None or sorted(int(a) % rank for a in np.ravel(axes)) != list(range(2, rank)):
            return False
    xu, yu = ctx.u8[x], ctx.out_u8(y)
    pooled = ctx.emit("QLinearGlobalAveragePool", [xu.value, ctx.scale(xu, f"{node.name}__x_scale"), ctx.zp(xu.zp), ctx.scale(yu, f"{node.name}__y_scale"), ctx.zp(yu.zp)],
                      yu.name if keep else f"{y}__u8_pooled", node.name, domain=_MS, channels_last=0)
    if not keep:
        pooled = ctx.emit("Squeeze", [pooled, ctx.const(np.arange(2, rank, dtype=np.int64), f"{node.name}__axes")], yu.name, f"{node.name}__Squeeze")
    ctx.wrote_u8(y, yu, pooled)
    return True


def _rank(ctx: _Ctx, t: str) -> int:
    """From the value info, else from the conv it comes from (through shape-keeping ops); 0: unknown."""
    if ctx.g.shape(t):
        return len(ctx.g.shape(t))
    p = ctx.g.upstream(t, ("Clip", "Relu", "Pad", "MaxPool", "Identity"))
    w = ctx.g.const_value(_in(p, 1)) if p is not None and p.op_type == "Conv" else None
    return 0 if w is None else w.ndim
