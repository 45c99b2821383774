"""Fake quantization on the replayed graph, exactly where and how the TensorRT form quantizes.

Every Q/DQ pair :func:`~trtcompress.quant.qdq_trt.write_trt_qdq` writes has its twin here, from the
same plan and table: an activation input of a planned node (per tensor, int8, zero point 0, one
scale per tensor shared by its readers), a weight input (per channel on the plan's axis), a graph
output stored in 8 bits, and a centered input (Sub, Pad with -c, Q/DQ, the bias gaining
``c * sum(W)`` of the float weights). Rounding is half to even and saturation is [-128, 127], as
ONNX QuantizeLinear does; the round has a straight-through gradient.

Activation scales: learned, LSQ-style (Esser et al., 2020), starting from the calibrated
``amax / 127``: the gradient of ``s * clamp(round(x / s))`` with respect to ``s`` is LSQ's
(``round(x/s) - x/s`` inside the range, the bound outside). LSQ's gradient scale is left out: Adam
divides each parameter's gradient by its own running magnitude, which cancels a constant factor.
Why learned: calibration picks each range for that tensor's own histogram, blind to what the
clipping costs downstream; learning it against the distillation loss costs one parameter per
tensor and writes back as a new amax (``learn_scales`` off keeps the calibrated ranges, STE only).
A centered input's scale stays as calibrated: its range is the input's known span.

Weight scales are not parameters: each step they are the writers' own rule on the current weights
(``max |w| / 127`` per channel, raised where the bias would overflow int32, :func:`..scales.scales_from_amax`),
with a straight-through round. The writers recompute the scale from the trained weights and get
the same value, so what ships is exactly the grid trained on, with no change to either writer.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Mapping

import numpy as np

from ..._optional import require
from .._ir import View, as_ir
from ..centering import _can_center, centered
from ..placement import QuantPlan
from ..scales import BIAS_LIMIT, TINY_AMAX, activation_scale
from ..table import CalibrationTable
from .replay import GraphReplay, Step

if TYPE_CHECKING:
    import onnx

torch = require("torch", "quantization-aware training")
nn = torch.nn

__all__ = ["FakeQuant", "fake_quant", "weight_scale"]

QMIN, QMAX = -128, 127


def fake_quant(x, s):
    """``s * clamp(round(x / s), -128, 127)``: round half to even, straight-through gradient."""
    r = x / s
    r = r + (torch.round(r) - r).detach()
    return torch.clamp(r, QMIN, QMAX) * s


def weight_scale(w, axis: int | None, bias=None, input_scale=None):
    """The writers' weight scale (:func:`..scales.scales_from_amax` of ``max |w|``) in torch, float32."""
    w = w.detach()
    if axis is None:
        scale = w.abs().max().clamp_min(TINY_AMAX) / 127.0
    else:
        dims = [d for d in range(w.ndim) if d != axis % w.ndim]
        scale = (w.abs().amax(dim=dims) if dims else w.abs()).clamp_min(TINY_AMAX) / 127.0
    if bias is not None and input_scale is not None:
        floor = bias.detach().double().abs() / (float(input_scale.detach() if torch.is_tensor(input_scale) else input_scale) * BIAS_LIMIT)
        if scale.ndim == 0:
            floor = floor.max() if floor.numel() else torch.zeros((), dtype=torch.float64)
        elif floor.shape != scale.shape:
            return scale
        scale = torch.maximum(scale.double(), floor).float()
    return scale


def _broadcast(s, w, axis: int | None):
    if axis is None or s.ndim == 0:
        return s
    shape = [1] * w.ndim
    shape[axis % w.ndim] = -1
    return s.reshape(shape)


class FakeQuant(nn.Module):
    """``replay`` (the float graph) with the TensorRT form's quantization of ``plan`` and ``table``;
    ``model`` is the ONNX model ``replay`` was built from (its node names are the plan's)."""

    def __init__(self, replay: GraphReplay, model: "onnx.ModelProto", plan: QuantPlan, table: CalibrationTable, learn_scales: bool = True,
                 weight_steps: Mapping[str, float] | None = None):
        super().__init__()
        self.replay = replay
        g = View(as_ir(model))
        # the CPU form (weight_steps given: node -> its weight grid's step, 2 for int7) neither centers
        # inputs nor quantizes the weights of the layers it keeps float
        centers = centered(table) if weight_steps is None else {}
        self.scale_index: dict[str, int] = {}
        self.scales = nn.ParameterList()
        self.initial: dict[str, float] = {}
        self.acts: dict[tuple[str, int], Any] = {}  # (node, input) -> tensor, or (center, scale) of a centered input
        for a in plan.activations:
            if a.tensor in centers and a.index == 0 and _can_center(g.by_name[a.node]):
                c = centers[a.tensor]
                self.acts[(a.node, a.index)] = (float(np.float32(c["center"])), float(np.float32(c["amax"] / 127.0)))
            else:
                self._add_scale(a.tensor, table, learn_scales)
                self.acts[(a.node, a.index)] = a.tensor
        self.outputs = [t for t in plan.output_tensors if t in table.amax]
        for t in self.outputs:
            self._add_scale(t, table, learn_scales)
        # a weight read by several nodes gets the scale of its first reader (as the writer decides it)
        first: dict[tuple[str, int | None], str] = {}
        self.weights: dict[tuple[str, int], tuple[int | None, bool, float]] = {}  # (node, input) -> (axis, owns the scale, step)
        for w in plan.weights:
            if w.tensor not in replay.param_index and w.tensor not in replay.buffer_names:
                continue  # not a float constant: the writer leaves it alone too
            if weight_steps is not None and w.node not in weight_steps:
                continue
            step = 1.0 if weight_steps is None else float(weight_steps[w.node])
            owner = first.setdefault((w.tensor, w.axis, step), w.node)
            self.weights[(w.node, w.index)] = (w.axis, owner == w.node, step)
        self._shared_scale: dict[tuple[str, int | None], Any] = {}
        self.constant_names = set(replay.param_index) | set(replay.buffer_names)
        self.weight_tensor = {(w.node, w.index): w.tensor for w in plan.weights}
        replay.hook, replay.after = self._inputs, self._outputs

    def _add_scale(self, tensor: str, table: CalibrationTable, learn: bool) -> None:
        if tensor in self.scale_index:
            return
        s = float(activation_scale(table, tensor))
        self.initial[tensor] = s
        self.scale_index[tensor] = len(self.scales)
        self.scales.append(nn.Parameter(torch.tensor(s, dtype=torch.float32), requires_grad=learn))

    def scale(self, tensor: str):
        return self.scales[self.scale_index[tensor]].clamp_min(TINY_AMAX / 127.0)

    def forward(self, *args, **kwargs):
        self._shared_scale = {}
        return self.replay(*args, **kwargs)

    def _inputs(self, step: Step, ins: list[Any]) -> tuple[list[Any], dict[str, Any] | None]:
        if not any((step.name, i) in self.acts or (step.name, i) in self.weights for i in range(len(ins))):
            return ins, None
        ins = list(ins)
        override = None
        # the writers take a constant bias only (bias_and_input_scale)
        bias = ins[2] if len(ins) > 2 and step.inputs[2] in self.constant_names else None
        in_scale = None
        act0 = self.acts.get((step.name, 0))
        if isinstance(act0, tuple):  # centered: Sub c, Pad -c, Q/DQ; the bias takes c * sum(W)
            c, s = act0
            x = ins[0] - c
            pads = list(step.get("pads") or [])
            if any(pads):
                n = len(pads) // 2
                spec: list[int] = []
                for b, e in zip(reversed(pads[:n]), reversed(pads[n:])):
                    spec += [b, e]
                x = torch.nn.functional.pad(x, spec, value=-c)
                override = {"pads": [0] * len(pads)}
            ins[0] = fake_quant(x, torch.tensor(s, dtype=torch.float32))
            w = ins[1]
            b = ins[2] if len(ins) > 2 and ins[2] is not None else torch.zeros(w.shape[0], dtype=w.dtype)
            bias = (b.double() + c * w.double().sum(dim=tuple(range(1, w.ndim)))).float()
            ins = ins + [None] * (3 - len(ins))
            ins[2] = bias
            in_scale = s
        elif isinstance(act0, str):
            in_scale = self.scale(act0)
        for i in range(len(ins)):
            key = (step.name, i)
            act = self.acts.get(key)
            if isinstance(act, str):
                ins[i] = fake_quant(ins[i], self.scale(act))
            elif key in self.weights:
                axis, owns, grid = self.weights[key]
                shared = (self.weight_tensor[key], axis, grid)
                if owns or shared not in self._shared_scale:
                    use_bias = step.op in ("Conv", "ConvTranspose", "Gemm") and bias is not None and in_scale is not None
                    # int7: twice the scale, as the CPU form writes it (exact in float32)
                    self._shared_scale[shared] = weight_scale(ins[i], axis, bias if use_bias else None, in_scale if use_bias else None) * grid
                ins[i] = fake_quant(ins[i], _broadcast(self._shared_scale[shared], ins[i], axis))
        return ins, override

    def _outputs(self, step: Step, outs: list[Any]) -> list[Any]:
        if not self.outputs:
            return outs
        return [fake_quant(o, self.scale(n)) if n in self.scale_index and n in self.outputs else o for n, o in zip(step.outputs, outs)]

    def amax(self) -> dict[str, float]:
        """Tensor -> the amax that writes back its learned scale exactly (``activation_scale`` of it is the scale)."""
        return {t: float(self.scale(t).detach()) * 127.0 for t in self.scale_index}

    def weight_scales(self) -> dict[tuple[str, int], np.ndarray]:
        """(node, input) -> the weight scale of the last forward pass."""
        keys = {k: (self.weight_tensor[k], self.weights[k][0], self.weights[k][2]) for k in self.weights}
        return {k: self._shared_scale[s].numpy() for k, s in keys.items() if s in self._shared_scale}
