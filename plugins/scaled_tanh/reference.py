"""CPU reference of the example plugin ``trtcompress::ScaledTanh`` (y = alpha * tanh(x)).

The pattern every plugin here follows: the op is an ONNX node in the plugin's domain, and its
reference is an ONNX *function* in standard ops carried in the model, so ONNX Runtime runs the
very model TensorRT gets (``with_reference``); :func:`for_tensorrt` drops the function so that
TensorRT's ONNX parser, meeting an op it does not know, takes the plugin of that name from the
registry (loaded with ``--plugin scaled_tanh``). ``reference`` is the same maths in numpy for tests.
"""
from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper

DOMAIN, OP = "trtcompress", "ScaledTanh"


def reference(x: np.ndarray, alpha: float = 1.0) -> np.ndarray:
    return (alpha * np.tanh(x.astype(np.float64))).astype(x.dtype)


def function() -> onnx.FunctionProto:
    alpha = onnx.AttributeProto(name="value_float", ref_attr_name="alpha", type=onnx.AttributeProto.FLOAT)
    const = helper.make_node("Constant", [], ["a"])
    const.attribute.append(alpha)
    nodes = [const, helper.make_node("Tanh", ["X"], ["t"]), helper.make_node("CastLike", ["a", "t"], ["ac"]), helper.make_node("Mul", ["t", "ac"], ["Y"])]
    return helper.make_function(DOMAIN, OP, ["X"], ["Y"], nodes, [helper.make_opsetid("", 17)], attributes=["alpha"])


def node(x: str, y: str, alpha: float, name: str = "scaled_tanh") -> onnx.NodeProto:
    return helper.make_node(OP, [x], [y], domain=DOMAIN, name=name, alpha=float(alpha))


def with_reference(model: onnx.ModelProto) -> onnx.ModelProto:
    """``model`` with the reference function added (ONNX Runtime then runs the plugin op)."""
    out = onnx.ModelProto()
    out.CopyFrom(model)
    if not any(f.domain == DOMAIN and f.name == OP for f in out.functions):
        out.functions.append(function())
    if not any(o.domain == DOMAIN for o in out.opset_import):
        out.opset_import.append(helper.make_opsetid(DOMAIN, 1))
    return out


def for_tensorrt(model: onnx.ModelProto) -> onnx.ModelProto:
    """``model`` without the reference function: TensorRT must use the registered plugin. The
    ONNX parser's plugin fallback looks the op type up in the registry under the node's
    ``plugin_namespace`` and ``plugin_version`` attributes (defaults "" and "1"), so they are set."""
    out = onnx.ModelProto()
    out.CopyFrom(model)
    keep = [f for f in out.functions if not (f.domain == DOMAIN and f.name == OP)]
    del out.functions[:]
    out.functions.extend(keep)
    for n in out.graph.node:
        if n.domain == DOMAIN and n.op_type == OP and not any(a.name == "plugin_namespace" for a in n.attribute):
            n.attribute.extend([helper.make_attribute("plugin_namespace", DOMAIN), helper.make_attribute("plugin_version", "1")])
    return out


def example_model(alpha: float = 0.5, dynamic: bool = True) -> onnx.ModelProto:
    """x[N,16] -> MatMul -> ScaledTanh -> y: a graph that uses the plugin between native ops."""
    w = np.random.default_rng(0).standard_normal((16, 16)).astype(np.float32) * 0.5
    batch = "N" if dynamic else 1
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["h"]), node("h", "y", alpha)], "scaled_tanh_example",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [batch, 16])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [batch, 16])],
        [onnx.numpy_helper.from_array(w, "w")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid(DOMAIN, 1)])
    model.ir_version = 8
    return with_reference(model)
