"""The float ONNX graph replayed in torch, node by node, with a hook on each node's inputs.

QAT trains the graph the Q/DQ writer and the CPU lowering quantize: the normalised ONNX graph
(BatchNorm folded, pads folded), not the user's torch module, whose layers and tensors do not map
one to one onto it. Each float initializer a Conv/ConvTranspose/Gemm/MatMul reads (weight, bias) is
a trainable parameter keyed by its initializer name, so the trained values go back into the same
initializers; every other constant is a buffer. An op this replay has no rule for is a one-line
error naming it. Rules are registered per op type (:func:`register_op`).
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable, Collection

import numpy as np

from ..._optional import require
from ...errors import ModelError
from .._ir import as_ir, attr, const_value

if TYPE_CHECKING:
    import onnx
    import onnx_ir as ir

torch = require("torch", "quantization-aware training")
nn = torch.nn
F = torch.nn.functional

__all__ = ["GraphReplay", "Step", "register_op", "supported_ops", "TRAINABLE_READERS"]

# ops whose constant float inputs 1 and 2 (weight, bias) train
TRAINABLE_READERS = ("Conv", "ConvTranspose", "Gemm", "MatMul")

OpRule = Callable[["Step", list[Any]], list[Any]]
_OPS: dict[str, OpRule] = {}


def register_op(*op_types: str) -> Callable[[OpRule], OpRule]:
    def deco(fn: OpRule) -> OpRule:
        for t in op_types:
            _OPS[t] = fn
        return fn

    return deco


def supported_ops() -> list[str]:
    return sorted(_OPS)


class Step:
    """One node, compiled: its op, input and output names and attributes as Python values."""

    def __init__(self, node: "ir.Node"):
        self.name, self.op = node.name, node.op_type
        self.inputs = [v.name if v is not None else "" for v in node.inputs]
        self.outputs = [v.name for v in node.outputs]
        self.attrs = {k: attr(node, k) for k in node.attributes}
        if self.op == "Constant":
            self.attrs = {"value": np.asarray(node.attributes["value"].as_tensor().numpy())}

    def get(self, name: str, default: Any = None) -> Any:
        return self.attrs.get(name, default)


Hook = Callable[[Step, list[Any]], "tuple[list[Any], dict[str, Any] | None]"]


class GraphReplay(nn.Module):
    """``model`` (ONNX, float) as a torch module: ``forward(*inputs)`` gives the graph's first
    output (all of them with ``all_outputs``). ``trainable``: initializer names held as parameters
    (None: those :data:`TRAINABLE_READERS` read at inputs 1 and 2). ``hook(step, inputs)`` may
    replace a node's inputs (fake quantization) and override attributes; ``after(step, outputs)``
    may replace its outputs."""

    def __init__(self, model: "onnx.ModelProto | ir.Model", trainable: Collection[str] | None = None):
        super().__init__()
        m = as_ir(model)
        graph = m.graph
        unknown = sorted({n.op_type for n in graph if n.op_type not in _OPS or n.domain not in ("", "ai.onnx")})
        if unknown:
            raise ModelError(f"quantization-aware training replays the ONNX graph in torch and has no rule for {', '.join(unknown)}; "
                             f"it runs graphs of {', '.join(supported_ops())} (leave qat off for this model)")
        self.steps = [Step(n) for n in graph]
        self.input_names = [v.name for v in graph.inputs if not v.is_initializer()]
        self.output_names = [v.name for v in graph.outputs]
        if trainable is None:
            trainable = trainable_initializers(m)
        self.param_index: dict[str, int] = {}
        self.params = nn.ParameterList()
        self.buffer_names: dict[str, str] = {}
        for i, (name, value) in enumerate(graph.initializers.items()):
            array = const_value(value)
            if array is None:
                continue
            t = torch.from_numpy(np.array(array))
            if name in trainable and t.is_floating_point():
                self.param_index[name] = len(self.params)
                self.params.append(nn.Parameter(t))
            else:
                self.register_buffer(f"c{i}", t, persistent=False)
                self.buffer_names[name] = f"c{i}"
        self.hook: Hook | None = None
        self.after: Callable[[Step, list[Any]], list[Any]] | None = None

    def param(self, name: str):
        return self.params[self.param_index[name]]

    def constants(self) -> dict[str, Any]:
        out = {n: getattr(self, b) for n, b in self.buffer_names.items()}
        out.update((n, self.params[i]) for n, i in self.param_index.items())
        return out

    def forward(self, *args, all_outputs: bool = False):
        env: dict[str, Any] = self.constants()
        env.update(zip(self.input_names, args))
        for step in self.steps:
            ins = [env[n] if n else None for n in step.inputs]
            override = None
            if self.hook is not None:
                ins, override = self.hook(step, ins)
            outs = _OPS[step.op](_with(step, override), ins)
            if self.after is not None:
                outs = self.after(step, outs)
            env.update(zip(step.outputs, outs))
        outs = [env[n] for n in self.output_names]
        return outs if all_outputs else outs[0]

    def trained(self) -> dict[str, np.ndarray]:
        """Initializer name -> its trained value (float32, the stored shape)."""
        return {n: self.params[i].detach().cpu().numpy().astype(np.float32, copy=True) for n, i in self.param_index.items()}


def trainable_initializers(model: "ir.Model") -> set[str]:
    """Float initializers a Conv/ConvTranspose/Gemm/MatMul reads as its weight or bias."""
    out = set()
    for node in model.graph:
        if node.op_type not in TRAINABLE_READERS:
            continue
        for v in node.inputs[1:3]:
            if v is not None and v.is_initializer() and not v.is_graph_input() and const_value(v) is not None and const_value(v).dtype == np.float32:
                out.add(v.name)
    return out


def _with(step: Step, override: dict[str, Any] | None) -> Step:
    if not override:
        return step
    s = Step.__new__(Step)
    s.__dict__.update(step.__dict__)
    s.attrs = {**step.attrs, **override}
    return s


# ---- op rules (ONNX semantics at the opsets normalize writes, 13 to 23) ----

def _spatial_pads(step: Step, n: int) -> tuple[list[int], list[int]]:
    if step.get("auto_pad", "NOTSET") not in ("NOTSET", ""):
        raise ModelError(f"quantization-aware training: {step.op} {step.name!r} uses auto_pad; normalize writes explicit pads")
    pads = list(step.get("pads") or [0] * (2 * n))
    return pads[:n], pads[n:]


def _padded(x, begin: list[int], end: list[int], value: float = 0.0):
    """``x`` padded on its spatial axes when the pads are asymmetric; returns (x, symmetric pads)."""
    if begin == end:
        return x, begin
    spec: list[int] = []
    for b, e in zip(reversed(begin), reversed(end)):
        spec += [b, e]
    return F.pad(x, spec, value=value), [0] * len(begin)


@register_op("Conv")
def _conv(step: Step, ins: list[Any]) -> list[Any]:
    x, w = ins[0], ins[1]
    b = ins[2] if len(ins) > 2 else None
    n = w.ndim - 2
    begin, end = _spatial_pads(step, n)
    x, pads = _padded(x, begin, end)
    fn = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}.get(n)
    if fn is None:
        raise ModelError(f"quantization-aware training: Conv {step.name!r} has {n} spatial axes (1 to 3 are replayed)")
    return [fn(x, w, b, stride=step.get("strides") or 1, padding=pads, dilation=step.get("dilations") or 1, groups=step.get("group", 1))]


@register_op("Gemm")
def _gemm(step: Step, ins: list[Any]) -> list[Any]:
    a, b = ins[0], ins[1]
    a = a.t() if step.get("transA", 0) else a
    b = b.t() if step.get("transB", 0) else b
    y = step.get("alpha", 1.0) * (a @ b)
    if len(ins) > 2 and ins[2] is not None:
        y = y + step.get("beta", 1.0) * ins[2]
    return [y]


@register_op("MatMul")
def _matmul(step: Step, ins: list[Any]) -> list[Any]:
    return [torch.matmul(ins[0], ins[1])]


_BINARY = {"Add": torch.add, "Sub": torch.sub, "Mul": torch.mul, "Div": torch.div, "Pow": torch.pow}
_UNARY = {"Relu": F.relu, "Sigmoid": torch.sigmoid, "Tanh": torch.tanh, "Identity": lambda x: x, "Erf": torch.erf,
          "Sqrt": torch.sqrt, "Exp": torch.exp, "Neg": torch.neg, "Abs": torch.abs}


@register_op(*_BINARY)
def _binary(step: Step, ins: list[Any]) -> list[Any]:
    return [_BINARY[step.op](ins[0], ins[1])]


@register_op(*_UNARY)
def _unary(step: Step, ins: list[Any]) -> list[Any]:
    return [_UNARY[step.op](ins[0])]


@register_op("Clip")
def _clip(step: Step, ins: list[Any]) -> list[Any]:
    lo = ins[1] if len(ins) > 1 and ins[1] is not None else step.get("min")
    hi = ins[2] if len(ins) > 2 and ins[2] is not None else step.get("max")
    return [torch.clamp(ins[0], None if lo is None else float(lo), None if hi is None else float(hi))]


@register_op("HardSigmoid")
def _hard_sigmoid(step: Step, ins: list[Any]) -> list[Any]:
    return [torch.clamp(step.get("alpha", 0.2) * ins[0] + step.get("beta", 0.5), 0.0, 1.0)]


@register_op("HardSwish")
def _hard_swish(step: Step, ins: list[Any]) -> list[Any]:
    return [ins[0] * torch.clamp(ins[0] / 6.0 + 0.5, 0.0, 1.0)]


@register_op("Gelu")
def _gelu(step: Step, ins: list[Any]) -> list[Any]:
    return [F.gelu(ins[0], approximate="tanh" if step.get("approximate", "none") == "tanh" else "none")]


@register_op("Softmax")
def _softmax(step: Step, ins: list[Any]) -> list[Any]:
    return [torch.softmax(ins[0], dim=step.get("axis", -1))]


@register_op("Flatten")
def _flatten(step: Step, ins: list[Any]) -> list[Any]:
    x, axis = ins[0], step.get("axis", 1) % max(ins[0].ndim, 1)
    return [x.reshape(int(np.prod(x.shape[:axis])), -1)]


@register_op("Reshape")
def _reshape(step: Step, ins: list[Any]) -> list[Any]:
    x, shape = ins[0], [int(d) for d in ins[1].tolist()]
    if not step.get("allowzero", 0):
        shape = [x.shape[i] if d == 0 else d for i, d in enumerate(shape)]
    return [x.reshape(shape)]


@register_op("Transpose")
def _transpose(step: Step, ins: list[Any]) -> list[Any]:
    perm = step.get("perm") or list(reversed(range(ins[0].ndim)))
    return [ins[0].permute(*perm)]


@register_op("Concat")
def _concat(step: Step, ins: list[Any]) -> list[Any]:
    return [torch.cat([t for t in ins if t is not None], dim=step.get("axis"))]


def _axes(step: Step, ins: list[Any]) -> list[int] | None:
    if len(ins) > 1 and ins[1] is not None:
        return [int(a) for a in ins[1].tolist()]
    return step.get("axes")


@register_op("ReduceMean")
def _reduce_mean(step: Step, ins: list[Any]) -> list[Any]:
    axes = _axes(step, ins)
    keep = bool(step.get("keepdims", 1))
    if not axes:
        if step.get("noop_with_empty_axes", 0):
            return [ins[0]]
        axes = list(range(ins[0].ndim))
    return [ins[0].mean(dim=axes, keepdim=keep)]


@register_op("Squeeze", "Unsqueeze")
def _squeeze(step: Step, ins: list[Any]) -> list[Any]:
    x, axes = ins[0], _axes(step, ins)
    if step.op == "Squeeze":
        return [x.squeeze() if not axes else x.squeeze(tuple(a % x.ndim for a in axes))]
    rank = x.ndim + len(axes)
    for a in sorted(a % rank for a in axes):
        x = x.unsqueeze(a)
    return [x]


@register_op("GlobalAveragePool")
def _global_avg(step: Step, ins: list[Any]) -> list[Any]:
    return [ins[0].mean(dim=tuple(range(2, ins[0].ndim)), keepdim=True)]


@register_op("MaxPool", "AveragePool")
def _pool(step: Step, ins: list[Any]) -> list[Any]:
    x, kernel = ins[0], step.get("kernel_shape")
    n = len(kernel)
    if n != 2:
        raise ModelError(f"quantization-aware training: {step.op} {step.name!r} pools over {n} axes (2 are replayed)")
    begin, end = _spatial_pads(step, n)
    strides = step.get("strides") or [1] * n
    ceil = bool(step.get("ceil_mode", 0))
    if step.op == "MaxPool":
        x, pads = _padded(x, begin, end, value=float("-inf"))
        return [F.max_pool2d(x, kernel, strides, pads, dilation=step.get("dilations") or 1, ceil_mode=ceil)]
    x, pads = _padded(x, begin, end)
    return [F.avg_pool2d(x, kernel, strides, pads, ceil_mode=ceil, count_include_pad=bool(step.get("count_include_pad", 0)))]


@register_op("LayerNormalization")
def _layer_norm(step: Step, ins: list[Any]) -> list[Any]:
    x, axis = ins[0], step.get("axis", -1) % ins[0].ndim
    shape = tuple(x.shape[axis:])
    return [F.layer_norm(x, shape, ins[1], ins[2] if len(ins) > 2 else None, eps=step.get("epsilon", 1e-5))]


@register_op("Constant")
def _constant(step: Step, ins: list[Any]) -> list[Any]:
    return [torch.from_numpy(np.array(step.get("value")))]
