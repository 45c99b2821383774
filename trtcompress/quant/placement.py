"""Where Q/DQ goes: TensorRT's placement rules as a registry keyed by op type.

TensorRT fuses a DequantizeLinear into the compute op that reads it and a QuantizeLinear into the
op that writes it, so Q/DQ belongs on the *inputs* of compute ops (Conv, ConvTranspose, Gemm,
MatMul, including both activations of the attention matmuls) and on the skip input of a residual
Add that follows a quantized Conv (the add then fuses into the conv). Everything else (LayerNorm,
Softmax, GELU/Erf, reductions, shape arithmetic, activations) stays float. Quantizing inputs, not
outputs, also means a Conv followed by ReLU6 is quantized after the clip: the int8 range covers
[0, 6] instead of the raw conv output that the clip throws away.

Adding an op is one rule function and one ``@register_rule`` line. A rule returns a
:class:`NodeQuant` (which inputs are activations, which are weights and on which axis) or a
:class:`Skip` with the reason the node stays float.
"""
from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any, Callable, Iterable, Mapping, Sequence

import numpy as np
import onnx

from ..select import Patterns, check_all_used
from ._ir import View, as_ir, attr, const_value, is_const, is_float, name_main_nodes, shape_of

if TYPE_CHECKING:
    import onnx_ir as ir

    from .table import CalibrationTable

__all__ = [
    "NodeQuant",
    "Skip",
    "QuantInput",
    "WeightSpec",
    "QuantPlan",
    "register_rule",
    "registered_rules",
    "plan_quantization",
    "apply_bounds",
]


@dataclasses.dataclass(frozen=True)
class NodeQuant:
    """A rule's decision: activation input indices, and weight inputs as ``(index, axis)``."""

    activations: tuple[int, ...] = ()
    weights: tuple[tuple[int, int | None], ...] = ()
    # tensors the CPU lowering needs a range for (beyond the Q/DQ inputs above)
    extra: tuple[str, ...] = ()


@dataclasses.dataclass(frozen=True)
class Skip:
    reason: str


Rule = Callable[["ir.Node", View, "PlanState"], "NodeQuant | Skip"]


@dataclasses.dataclass(frozen=True)
class _RuleEntry:
    fn: Rule
    phase: int  # rules of phase 1 see the nodes phase 0 quantized (the residual Add)


_RULES: dict[str, _RuleEntry] = {}


def register_rule(*op_types: str, phase: int = 0) -> Callable[[Rule], Rule]:
    """Register ``fn`` as the placement rule of ``op_types``."""

    def deco(fn: Rule) -> Rule:
        for op in op_types:
            _RULES[op] = _RuleEntry(fn, phase)
        return fn

    return deco


def registered_rules() -> list[str]:
    return sorted(_RULES)


@dataclasses.dataclass
class PlanState:
    """What earlier rules decided; phase-1 rules read it."""

    quantized: set[str] = dataclasses.field(default_factory=set)


# -- the plan ------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class QuantInput:
    node: str
    index: int
    tensor: str


@dataclasses.dataclass(frozen=True)
class WeightSpec:
    node: str
    index: int
    tensor: str
    axis: int | None  # None: per tensor


@dataclasses.dataclass
class QuantPlan:
    """Which node inputs get Q/DQ. Calibration reads :attr:`activation_tensors`."""

    activations: list[QuantInput]
    weights: list[WeightSpec]
    quantized_nodes: list[str]
    float_nodes: dict[str, str]  # node name -> why it stays float
    op_types: dict[str, str]  # node name -> op type, for reports
    extra_tensors: list[str] = dataclasses.field(default_factory=list)  # ranges for the CPU lowering only
    bounds: dict[str, float] = dataclasses.field(default_factory=dict)  # tensor -> |bound| of the Clip producing it
    # graph outputs stored in 8 bits (opt-in ``quantize_outputs``); every other graph output stays float
    output_tensors: list[str] = dataclasses.field(default_factory=list)

    @property
    def qdq_tensors(self) -> list[str]:
        """Activation tensors that get a Q/DQ pair in the TensorRT form."""
        return list(dict.fromkeys(a.tensor for a in self.activations))

    @property
    def activation_tensors(self) -> list[str]:
        """Every tensor calibration must give an amax: the Q/DQ inputs plus the CPU lowering's extras."""
        return list(dict.fromkeys([a.tensor for a in self.activations] + list(self.extra_tensors)))

    def without(self, nodes: Iterable[str], reason: str = "kept float for the accuracy target") -> "QuantPlan":
        """The same plan with ``nodes`` left float (used by the accuracy-target fallback)."""
        drop = set(nodes)
        float_nodes = dict(self.float_nodes)
        for n in drop:
            if n in self.quantized_nodes:
                float_nodes[n] = reason
        return QuantPlan(
            [a for a in self.activations if a.node not in drop],
            [w for w in self.weights if w.node not in drop],
            [n for n in self.quantized_nodes if n not in drop],
            float_nodes,
            self.op_types,
            list(self.extra_tensors),
            dict(self.bounds),
            list(self.output_tensors),
        )

    def to_dict(self) -> dict[str, Any]:
        reasons: dict[str, list[str]] = {}
        for n, r in self.float_nodes.items():
            reasons.setdefault(r, []).append(n)
        return {
            "quantized_nodes": len(self.quantized_nodes),
            "float_nodes": len(self.float_nodes),
            "quantized": [{"node": n, "op": self.op_types.get(n, "")} for n in self.quantized_nodes],
            "kept_float": {r: ns for r, ns in sorted(reasons.items())},
            "activation_tensors": self.qdq_tensors,
            "weights": [{"node": w.node, "tensor": w.tensor, "axis": w.axis} for w in self.weights],
        }


# -- include / exclude -----------------------------------------------------------------------------


def plan_quantization(
    model: "onnx.ModelProto | ir.Model",
    include: Sequence[str] = (),
    exclude: Sequence[str] = (),
    keep_float: Mapping[str, str] | None = None,
    quantize_outputs: bool = False,
) -> QuantPlan:
    """Apply the registered rules to every node of ``model``'s main graph (unnamed nodes get names
    in place, as ``graph._util.name_nodes`` gives them; a ModelProto's main-graph nodes the same).

    ``keep_float``: node name -> reason, nodes left float before the rules run (so a residual Add
    whose Conv is among them is not quantized for it either). Graph outputs stay float unless
    ``quantize_outputs``: a calibrated range clips the rare large values an output exists to show
    (a text detector's scores, a regressor's extremes)."""
    keep_float = keep_float or {}
    m = as_ir(model)
    name_main_nodes(m, model if isinstance(model, onnx.ModelProto) else None)
    g = View(m)
    inc, exc = Patterns(tuple(include)), Patterns(tuple(exclude))
    state = PlanState()
    decisions: dict[str, NodeQuant] = {}
    float_nodes: dict[str, str] = {}
    for phase in (0, 1):
        for node in g.nodes:
            entry = _RULES.get(node.op_type)
            if entry is None:
                if phase == 0:
                    float_nodes[node.name] = f"{node.op_type}: left float (TensorRT placement quantizes compute-op inputs only)"
                continue
            if entry.phase != phase:
                continue
            if node.name in keep_float:
                float_nodes[node.name] = keep_float[node.name]
                continue
            if exc and (p := exc.match(_names(node))):
                float_nodes[node.name] = f"excluded by {p!r}"
                continue
            if inc and not inc.match(_names(node)):
                float_nodes[node.name] = "not matched by the include patterns"
                continue
            d = entry.fn(node, g, state)
            if isinstance(d, Skip):
                float_nodes[node.name] = d.reason
                continue
            decisions[node.name] = d
            state.quantized.add(node.name)
    _check_patterns(g, inc, exc)

    activations, weights, extra, quantized = [], [], [], []
    for node in g.nodes:
        d = decisions.get(node.name)
        if d is None:
            continue
        quantized.append(node.name)
        activations += [QuantInput(node.name, i, node.inputs[i].name) for i in d.activations]
        weights += [WeightSpec(node.name, i, node.inputs[i].name, axis) for i, axis in d.weights]
        extra += d.extra
    # The CPU lowering writes a quantized output for each compute op: it needs the range of the
    # tensor after the op's activation (ReLU/Clip), which TensorRT's placement does not quantize.
    for name in quantized:
        node = g.by_name[name]
        if node.op_type in _COMPUTE_OPS:
            extra.append(_post_activation(node.outputs[0], g))
    qdq = {a.tensor for a in activations}
    outputs = [o.name for o in m.graph.outputs if o.producer() is not None and is_float(o)] if quantize_outputs else []
    extra = [t for t in dict.fromkeys(extra + outputs) if t not in qdq and is_float(g.values[t])]
    bounds = {t: b for t in list(qdq) + extra if (b := _clip_bound(g.values[t])) is not None}
    for name, op, scope in subgraph_layers(m):
        float_nodes[name] = f"{op} inside {scope}: quantize does not rewrite If/Loop/Scan bodies; left float"
    return QuantPlan(activations, weights, quantized, float_nodes, {n.name: n.op_type for n in g.nodes}, extra, bounds, outputs)


# layers a body of an If/Loop/Scan may hold that quantize would otherwise consider
_SUBGRAPH_LAYER_OPS = ("Conv", "ConvTranspose", "Gemm", "MatMul", "LSTM", "GRU", "RNN")


def subgraph_layers(model: "onnx.ModelProto | ir.Model") -> list[tuple[str, str, str]]:
    """(name, op type, scope) of each weighted layer inside an If/Loop/Scan body: placement
    covers the main graph only, so these stay float and the stage says so per layer. The scope
    reads ``If_0/then_branch`` (nested: ``If_0/then_branch/Loop_2/body``)."""
    import onnx_ir as ir

    def bodies(graph, scope: str):
        for i, node in enumerate(graph):
            for a in node.attributes.values():
                subs = [a.as_graph()] if a.type == ir.AttributeType.GRAPH else list(a.as_graphs()) if a.type == ir.AttributeType.GRAPHS else []
                for sub in subs:
                    where = f"{node.name or node.op_type + '_' + str(i)}/{a.name}"
                    inner = f"{scope}/{where}" if scope else where
                    yield sub, inner
                    yield from bodies(sub, inner)

    return [
        (n.name or n.outputs[0].name, n.op_type, scope)
        for sub, scope in bodies(as_ir(model).graph, "")
        for n in sub
        if n.op_type in _SUBGRAPH_LAYER_OPS
    ]


# ops whose output values are a subset of their first input's (so a bound carries through)
_BOUND_PRESERVING = ("Pad", "MaxPool", "Reshape", "Flatten", "Transpose", "Squeeze", "Unsqueeze", "Identity", "Slice", "DepthToSpace", "SpaceToDepth")


def _input(node: "ir.Node", i: int) -> "ir.Value | None":
    return node.inputs[i] if i < len(node.inputs) else None


def _clip_bound(value: "ir.Value") -> float | None:
    """max(|min|, |max|) of the Clip (ReLU6) that produces ``value`` (through ops that only move,
    drop or pad values, e.g. the Pad before a depthwise conv), when the bounds are constants."""
    p = value.producer() if value is not None else None
    if p is not None and p.op_type in _BOUND_PRESERVING:
        bound = _clip_bound(p.inputs[0])
        if bound is not None and p.op_type == "Pad" and attr(p, "mode", "constant") == "constant":
            fill = const_value(_input(p, 2)) if _input(p, 2) is not None else attr(p, "value", 0.0)
            if fill is None or abs(float(np.ravel(fill)[0])) > bound:
                return None  # the padding adds values outside the bound
        return bound
    if p is None or p.op_type != "Clip":
        return None
    lo = const_value(_input(p, 1)) if _input(p, 1) is not None else attr(p, "min")
    hi = const_value(_input(p, 2)) if _input(p, 2) is not None else attr(p, "max")
    if lo is None or hi is None:
        return None
    return float(max(abs(float(lo)), abs(float(hi))))


def apply_bounds(plan: QuantPlan, table: "CalibrationTable") -> list[str]:
    """Give each bounded (ReLU6-style) tensor the range it really has: ``min(bound, observed max)``.

    A clip piles a large share of its values exactly at the bound. Histogram methods (entropy in
    particular) read that pile as an outlier and clip far below it (seen on EfficientNet-Lite0:
    ReLU6 outputs clipped at 0.44 with 20% of the values above), which loses most of the
    network's signal. The observed maximum comes from the method's details when recorded there.
    Returns the tensors whose amax changed.
    """
    changed = []
    per_tensor = table.details.get("tensors", {}) if isinstance(table.details, dict) else {}
    for t, bound in plan.bounds.items():
        if t not in table.amax:
            continue
        observed = per_tensor.get(t, {}).get("max") if isinstance(per_tensor.get(t), dict) else None
        target = min(bound, float(observed)) if observed else bound
        if table.amax[t] < target:
            table.amax[t] = target
            changed.append(t)
    return changed


def _names(node: "ir.Node") -> tuple[str, str]:
    return node.name, node.op_type


def _check_patterns(g: View, inc: Patterns, exc: Patterns) -> None:
    layers = [_names(n) for n in g.nodes]
    check_all_used(inc, layers, "--include")
    check_all_used(exc, layers, "--exclude")


_COMPUTE_OPS = ("Conv", "ConvTranspose", "Gemm", "MatMul")
_POINTWISE_ACT = ("Relu", "Clip")


def _post_activation(value: "ir.Value", g: View) -> str:
    """``value``'s name, or that of the output of the ReLU/Clip that is its only consumer."""
    cons = g.consumers(value)
    if len(cons) == 1 and cons[0].op_type in _POINTWISE_ACT and not value.is_graph_output():
        return cons[0].outputs[0].name
    return value.name


# -- rules -----------------------------------------------------------------------------------------


def _activation_ok(value: "ir.Value | None") -> bool:
    return value is not None and not is_const(value) and is_float(value)


@register_rule("Conv")
def _conv(node: "ir.Node", g: View, state: PlanState) -> NodeQuant | Skip:
    if not _activation_ok(node.inputs[0]):
        return Skip("Conv input is not a float activation")
    if not is_const(_input(node, 1)):
        return Skip("Conv weight is not a constant")
    return NodeQuant(activations=(0,), weights=((1, 0),))  # output channels: axis 0


@register_rule("ConvTranspose")
def _conv_transpose(node: "ir.Node", g: View, state: PlanState) -> NodeQuant | Skip:
    if not _activation_ok(node.inputs[0]):
        return Skip("ConvTranspose input is not a float activation")
    if not is_const(_input(node, 1)):
        return Skip("ConvTranspose weight is not a constant")
    # weight [C_in, C_out/group, k...]: output channels on axis 1, per channel only without groups
    axis = 1 if attr(node, "group", 1) == 1 else None
    return NodeQuant(activations=(0,), weights=((1, axis),))


@register_rule("Gemm")
def _gemm(node: "ir.Node", g: View, state: PlanState) -> NodeQuant | Skip:
    if attr(node, "transA", 0):
        return Skip("Gemm with transA=1 is left float")
    if not _activation_ok(node.inputs[0]):
        return Skip("Gemm input A is not a float activation")
    if is_const(node.inputs[1]):
        axis = 0 if attr(node, "transB", 0) else 1  # the N (output) dimension of B
        return NodeQuant(activations=(0,), weights=((1, axis),))
    return NodeQuant(activations=(0, 1))


@register_rule("MatMul")
def _matmul(node: "ir.Node", g: View, state: PlanState) -> NodeQuant | Skip:
    acts, weights = [], []
    for i, value in enumerate(node.inputs[:2]):
        if is_const(value):
            shape = shape_of(value) or ()
            # constant B [.., K, N]: per output column (last axis); a constant A per tensor
            axis = len(shape) - 1 if i == 1 and len(shape) >= 2 else None
            weights.append((i, axis))
        elif _activation_ok(value):
            acts.append(i)
        else:
            return Skip(f"MatMul input {value.name if value is not None else ''!r} is not float")
    if not acts:
        return Skip("MatMul of two constants (constant folding removes it)")
    return NodeQuant(activations=tuple(acts), weights=tuple(weights))


@register_rule("Add", phase=1)
def _residual_add(node: "ir.Node", g: View, state: PlanState) -> NodeQuant | Skip:
    """Quantize the skip input of an Add that joins a quantized Conv branch with a skip."""
    if _is_attention_mask_add(node, g):
        return Skip("attention-mask Add: never quantized (its values sit near the float minimum)")
    x, y = node.inputs[0], node.inputs[1]
    if is_const(x) or is_const(y) or not (is_float(x) and is_float(y)):
        return Skip("Add with a constant input (bias) is left float")
    px, py = x.producer(), y.producer()
    conv_x = px is not None and px.op_type in ("Conv", "ConvTranspose") and px.name in state.quantized
    conv_y = py is not None and py.op_type in ("Conv", "ConvTranspose") and py.name in state.quantized
    if not (conv_x or conv_y):
        return Skip("Add does not follow a quantized Conv: left float")
    if conv_x and conv_y:
        # TensorRT fuses the later conv with the add; the earlier conv's output is the skip input
        order = {n.name: i for i, n in enumerate(g.nodes)}
        skip = 0 if order[px.name] < order[py.name] else 1
    else:
        skip = 1 if conv_x else 0
    fused = node.inputs[1 - skip].name
    return NodeQuant(activations=(skip,), extra=(fused, node.outputs[0].name))


def _is_attention_mask_add(node: "ir.Node", g: View) -> bool:
    """An Add whose result goes (through shape ops) into a Softmax: scores + mask."""
    frontier, seen = [node.outputs[0]], set()
    for _ in range(4):
        nxt = []
        for t in frontier:
            for c in g.consumers(t):
                if c.op_type == "Softmax":
                    return True
                if c.op_type in ("Reshape", "Cast", "Transpose", "Identity", "Add", "Where") and c.name not in seen:
                    seen.add(c.name)
                    nxt += [o for o in c.outputs if o.name]
        frontier = nxt
    return False
