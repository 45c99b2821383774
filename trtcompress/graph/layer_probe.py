"""Measure one layer's output error for a replacement weight, on the inputs it sees in the model.

Low-rank's error rule (a rank per layer) and weight sharing's (clusters per layer) ask the same
question: how far does this layer's output move on calibration data if its weight becomes W'? The
model is run once with each probed layer's data input exposed as an output; then each layer runs
alone in ONNX Runtime with the weight fed as an input, so trying a weight costs one small session
run per calibration batch and no rebuilt session.
"""
from __future__ import annotations

import math
from typing import TYPE_CHECKING, Callable, Iterable, NamedTuple, Sequence

import numpy as np
import onnx
from onnx import helper

from ..errors import ConfigError, DataError

if TYPE_CHECKING:
    import onnx_ir as ir

__all__ = ["ProbeLayer", "layer_probes", "calibration_feeds"]

Feed = dict[str, np.ndarray]
TensorOf = Callable[["ir.Value | None"], "ir.TensorProtocol | None"]


class ProbeLayer(NamedTuple):
    node: "ir.Node"  # a main-graph node whose input 0 is the data and whose other inputs are constant
    weight: "ir.Value"  # the input whose value is replaced
    array: np.ndarray  # the weight's current value (the reference output uses it)
    x_type: int  # ONNX element type of the data input


def calibration_feeds(model: onnx.ModelProto, config, given: Iterable[Feed] | None, what: str) -> list[Feed]:
    """``given``, or the feeds of ``config.calib`` read with the config's ``preprocess``, ``limit``,
    ``batch``, ``seed`` and ``inputs`` (the fields every stage with a data-driven rule has)."""
    if given is not None:
        return list(given)
    if not config.calib:
        raise ConfigError(f"{what} needs calibration data: set calib to a data spec (a .npz folder, an image folder with preprocess, or random:N)")
    from ..data import model_inputs
    from ..data.options import DataOptions, open_data

    options = DataOptions(batch=config.batch, limit=config.limit, seed=config.seed, preprocess=config.preprocess, inputs=config.inputs)
    return list(open_data(config.calib, model_inputs(model), options))


def layer_probes(model: onnx.ModelProto, layers: Sequence[ProbeLayer], feeds: Iterable[Feed], tensor_of: TensorOf,
                 stage: str) -> list[Callable[[np.ndarray], float]]:
    """For each layer, ``error(w)``: the relative (Frobenius) distance of the layer's output with
    weight ``w`` from its output with ``layer.array``, over every calibration feed."""
    feeds = list(feeds)
    if not feeds:
        raise DataError(f"{stage}: the calibration data holds no samples")
    inputs = _recorded_inputs(model, layers, feeds, tensor_of)
    return [_probe(model, l, inputs[l.node.inputs[0].name], tensor_of, i, stage) for i, l in enumerate(layers)]


def _session(model: onnx.ModelProto):
    from ..sessions import open_session

    return open_session(model)


def _recorded_inputs(model: onnx.ModelProto, layers: Sequence[ProbeLayer], feeds: list[Feed], tensor_of: TensorOf) -> dict[str, list[np.ndarray]]:
    probe = onnx.ModelProto()
    probe.CopyFrom(model)
    existing = {o.name for o in probe.graph.output}
    names: list[str] = []
    for l in layers:
        x = l.node.inputs[0]
        if x.name in names:
            continue
        names.append(x.name)
        if x.name not in existing and tensor_of(x) is None:
            probe.graph.output.append(helper.make_tensor_value_info(x.name, l.x_type, None))
    sess = _session(probe)
    inputs: dict[str, list[np.ndarray]] = {n: [] for n in names}
    for feed in feeds:
        for n, v in zip(names, sess.run(names, feed)):
            inputs[n].append(v)
    return inputs


def _probe(model: onnx.ModelProto, layer: ProbeLayer, xs: list[np.ndarray], tensor_of: TensorOf, index: int,
           stage: str) -> Callable[[np.ndarray], float]:
    import onnx_ir as ir

    node = layer.node
    inputs = [helper.make_tensor_value_info("x", layer.x_type, None),
              helper.make_tensor_value_info("w", helper.np_dtype_to_tensor_dtype(layer.array.dtype), None)]
    inits, names = [], []
    for j, value in enumerate(node.inputs):
        if j == 0:
            names.append("x")
        elif value is layer.weight:
            names.append("w")
        elif value is None:
            names.append("")
        else:
            t = tensor_of(value)
            if t is None:
                raise DataError(f"{stage}: layer {node.name!r} has a non-constant input {value.name!r} besides its data input")
            proto = ir.serde.serialize_tensor(t)
            proto.name = value.name
            inits.append(proto)
            names.append(value.name)
    one = helper.make_node(node.op_type, names, ["y"])
    one.attribute.extend(ir.serde.serialize_attribute(a) for a in node.attributes.values())
    graph = helper.make_graph([one], f"probe{index}", inputs, [helper.make_tensor_value_info("y", layer.x_type, None)], inits)
    sess = _session(helper.make_model(graph, opset_imports=list(model.opset_import), ir_version=model.ir_version))
    ys = [sess.run(None, {"x": x, "w": layer.array})[0].astype(np.float64) for x in xs]
    den = sum(float(np.sum(y ** 2)) for y in ys) or 1.0

    def error(w: np.ndarray) -> float:
        w = np.ascontiguousarray(w, dtype=layer.array.dtype)
        num = sum(float(np.sum((sess.run(None, {"x": x, "w": w})[0].astype(np.float64) - y) ** 2)) for x, y in zip(xs, ys))
        return math.sqrt(num / den)

    return error
