"""Stage contracts: properties of a model that a stage establishes, and what a later stage does to them.

onnx-ir's passes declare ``requires``/``ensures`` and check them at run time; trtcompress stages do
the same with named, measurable properties (:data:`PROPERTIES`: a function counting where the
property holds in an ONNX model, e.g. the layers whose weights follow 2:4). A stage declares
``ensures`` (what its output has) and ``after`` (what it does to a property an earlier stage
established: refuse, with the reason and the order that works, or warn). The pipeline refuses a
sequence before anything runs (:func:`check_sequence`) and, after each stage, checks that every
property established earlier still holds as often as before, so a stage that breaks one without
declaring it is caught too.

Refuse or warn: a stage that would silently undo what the user asked for an earlier stage, with no
gain from that order, is refused and the message names the order that works (low-rank after 2:4:
the factors are dense; anything that rewrites weights after quantize: the calibrated ranges no
longer fit them). One that still gives a usable model in that order is warned about (pruning
after quantize: the zeros stay zeros, but the per-channel scales were fitted to the dense
weights, so accuracy is lower than pruning first). A stage that turns a property into another
form on purpose consumes it (quantize decodes shared weights into int8 weights): no message, and
the property is no longer checked after that stage.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Callable, Literal, Mapping, Sequence

from .errors import ConfigError

__all__ = ["After", "PROPERTIES", "measure", "check_sequence", "check_after", "consumed"]

_QUANT_OPS = frozenset({
    "QuantizeLinear", "DequantizeLinear", "QLinearConv", "QLinearMatMul", "ConvInteger", "MatMulInteger",
    "MatMulIntegerToFloat", "DynamicQuantizeLinear", "QLinearAdd", "QLinearGlobalAveragePool",
})


def _layers_2to4(model: Any) -> int:
    from .sparsity.inspect import inspect_layers

    return sum(1 for l in inspect_layers(model) if l.shape is not None and l.follows_2to4)


def _quantized_nodes(model: Any) -> int:
    return sum(1 for n in model.graph.node if n.op_type in _QUANT_OPS)


def _shared_weights(model: Any) -> int:
    from .metrics import shared_weights

    return len(shared_weights(model))


# property -> (count of where it holds in an ONNX model, what to call it in a message)
PROPERTIES: dict[str, tuple[Callable[[Any], int], str]] = {
    "2:4": (_layers_2to4, "layers with 2:4 weights"),
    "quantized": (_quantized_nodes, "quantization nodes"),
    "shared": (_shared_weights, "shared weights"),
}


@dataclasses.dataclass(frozen=True)
class After:
    """What a stage does when an earlier stage established ``property``."""

    action: Literal["refuse", "warn", "consume"]
    reason: str


def measure(model: Any, names: Sequence[str]) -> dict[str, int]:
    """How often each property holds in ``model`` (empty for a model that is not ONNX)."""
    import onnx

    if not isinstance(model, onnx.ModelProto):
        return {}
    return {n: PROPERTIES[n][0](model) for n in names}


def check_sequence(stages: Sequence[tuple[str, Any]]) -> list[tuple[int, str]]:
    """Refuse (ConfigError) a sequence of ``(name, entry)`` where a stage comes after one whose
    declared ``ensures`` it would break; return the warnings as ``(stage index, message)``."""
    established: dict[str, str] = {}  # property -> the stage that established it
    warnings: list[tuple[int, str]] = []
    for i, (name, entry) in enumerate(stages):
        after: Mapping[str, After] = getattr(entry, "after", {}) or {}
        for prop, by in established.items():
            rule = after.get(prop)
            if rule is None or rule.action == "consume":
                continue
            msg = f"stage {name!r} after {by!r}: {rule.reason}"
            if rule.action == "refuse":
                raise ConfigError(msg)
            warnings.append((i, msg))
        for prop in consumed(entry):
            established.pop(prop, None)
        for prop in getattr(entry, "ensures", ()) or ():
            established.setdefault(prop, name)
    return warnings


def consumed(entry: Any) -> list[str]:
    """The properties a stage turns into another form on purpose."""
    return [p for p, rule in (getattr(entry, "after", {}) or {}).items() if rule.action == "consume"]


def check_after(name: str, before: Mapping[str, int], after: Mapping[str, int], established: Mapping[str, str]) -> str | None:
    """The message when stage ``name`` left fewer places where an established property holds."""
    for prop, by in established.items():
        if prop in before and prop in after and after[prop] < before[prop]:
            return f"stage {name!r} broke what {by!r} established: {PROPERTIES[prop][1]} {before[prop]} -> {after[prop]}"
    return None
