"""FP32 ONNX -> float16 ONNX, for strongly typed TensorRT (10.x, 11.x), where precision comes from
the ONNX types and there is no FP16 builder flag.

Every float32 compute runs in float16 except the numerically sensitive ops, which stay float32
with Casts around them: LayerNormalization and the other normalisations (their variance
underflows/overflows in float16), Softmax/LogSoftmax (exp of large logits), reductions (sums of
many terms), and QuantizeLinear/DequantizeLinear (the Q/DQ scales stay float32, as calibrated).
Graph inputs and outputs keep float32, so the converted model is fed and compared like the
original. Ops with subgraphs (If, Loop, Scan) are kept float32 whole.

In a Q/DQ model the quantized layers stay as the Q/DQ model has them: a node that reads a
DequantizeLinear output or feeds a QuantizeLinear keeps float32, so TensorRT still sees the
DQ -> Conv/MatMul (-> activation) -> Q pattern it fuses into INT8 kernels (a Cast between the DQ
and the layer would stand in the way of that fusion); FP16 covers the layers left unquantized.
"""
from __future__ import annotations

import dataclasses

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

__all__ = ["KEEP_FP32", "Fp16Result", "convert_to_fp16"]

KEEP_FP32 = frozenset({
    "LayerNormalization", "GroupNormalization", "InstanceNormalization", "BatchNormalization",
    "Softmax", "LogSoftmax",
    "ReduceMean", "ReduceSum", "ReduceProd", "ReduceL1", "ReduceL2", "ReduceLogSum", "ReduceLogSumExp",
    "ReduceSumSquare", "ReduceMax", "ReduceMin", "CumSum",
    "QuantizeLinear", "DequantizeLinear",
    "If", "Loop", "Scan",
    # type-polymorphic or type-producing ops: their outputs' types are not the input's to change
    "Cast", "CastLike", "Shape", "Size", "ConstantOfShape", "Range", "RandomNormal", "RandomUniform",
    "RandomNormalLike", "RandomUniformLike", "EyeLike",
})
# inputs that must stay float32 whatever the node's precision (ONNX types them tensor(float))
_FLOAT_ONLY_INPUTS = {"Resize": {2}, "Upsample": {1}}
_F32, _F16 = TensorProto.FLOAT, TensorProto.FLOAT16
_FP16_MAX = float(np.finfo(np.float16).max)


@dataclasses.dataclass
class Fp16Result:
    model: onnx.ModelProto
    converted_nodes: int
    kept_fp32_nodes: list[str]
    casts_added: int
    clipped_initializers: list[str]  # float32 values beyond float16's range, clipped to it


def convert_to_fp16(model: onnx.ModelProto) -> Fp16Result:
    """A float16 copy of ``model`` (see the module docstring); ``model`` is not changed."""
    model = onnx.shape_inference.infer_shapes(model, data_prop=True)
    g = model.graph
    types: dict[str, int] = {}
    for vi in list(g.input) + list(g.output) + list(g.value_info):
        types[vi.name] = vi.type.tensor_type.elem_type
    for init in g.initializer:
        types[init.name] = init.data_type
    producers = {o: n for n in g.node for o in n.output}
    dq_outputs = {o for n in g.node if n.op_type == "DequantizeLinear" for o in n.output}
    q_inputs = {n.input[0] for n in g.node if n.op_type == "QuantizeLinear" and n.input}
    qdq_layers = {id(n) for n in g.node if any(i in dq_outputs for i in n.input) or any(o in q_inputs for o in n.output)}
    fp16_nodes = [n for n in g.node if n.op_type not in KEEP_FP32 and n.domain in ("", "ai.onnx") and id(n) not in qdq_layers]
    fp16_ids = {id(n) for n in fp16_nodes}

    def is_f32(name: str) -> bool:
        return types.get(name) == _F32

    # where each float32 tensor lives in float16 after conversion: outputs of converted nodes
    as_fp16: set[str] = set()
    for n in fp16_nodes:
        if n.op_type == "Constant":
            continue
        as_fp16.update(o for o in n.output if is_f32(o))
    # float32 initializers read only by converted nodes (at convertible positions) become float16
    inits = {t.name: t for t in g.initializer}
    readers: dict[str, list[tuple[onnx.NodeProto, int]]] = {}
    for n in g.node:
        for i, name in enumerate(n.input):
            readers.setdefault(name, []).append((n, i))
    graph_outputs = {o.name for o in g.output}

    def wants_fp16(node: onnx.NodeProto, index: int) -> bool:
        return id(node) in fp16_ids and index not in _FLOAT_ONLY_INPUTS.get(node.op_type, ())

    clipped: list[str] = []
    for name, t in inits.items():
        if t.data_type != _F32 or name in graph_outputs:
            continue
        users = readers.get(name, [])
        if users and all(wants_fp16(n, i) for n, i in users):
            arr = numpy_helper.to_array(t)
            if np.abs(arr).max(initial=0) > _FP16_MAX:
                clipped.append(name)
            t.CopyFrom(numpy_helper.from_array(np.clip(arr, -_FP16_MAX, _FP16_MAX).astype(np.float16), name))
            as_fp16.add(name)
    for n in fp16_nodes:  # float32 Constant nodes feeding converted nodes
        if n.op_type == "Constant" and n.output and is_f32(n.output[0]):
            users = readers.get(n.output[0], [])
            if users and all(wants_fp16(u, i) for u, i in users) and n.output[0] not in graph_outputs:
                for a in n.attribute:
                    if a.name == "value":
                        a.t.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(a.t).astype(np.float16), a.t.name))
                        as_fp16.add(n.output[0])

    new_nodes: list[onnx.NodeProto] = []
    casts: dict[tuple[str, int], str] = {}
    used: set[str] = set(types) | set(producers) | {n.name for n in g.node}

    def unique(base: str) -> str:
        name, k = base, 0
        while name in used:
            k += 1
            name = f"{base}_{k}"
        used.add(name)
        return name

    def cast(name: str, to: int) -> str:
        key = (name, to)
        if key not in casts:
            out = unique(f"{name}_{'fp16' if to == _F16 else 'fp32'}")
            new_nodes.append(helper.make_node("Cast", [name], [out], to=to, name=unique(f"Cast_{out}")))
            casts[key] = out
        return casts[key]

    converted = 0
    kept: list[str] = []
    for n in g.node:
        if id(n) in fp16_ids:
            converted += 1
            for i, name in enumerate(n.input):
                if not name or not is_f32(name):
                    continue
                if wants_fp16(n, i) and name not in as_fp16:
                    n.input[i] = cast(name, _F16)
                elif not wants_fp16(n, i) and name in as_fp16:
                    n.input[i] = cast(name, _F32)
        else:
            kept.append(n.name or n.output[0])
            for i, name in enumerate(n.input):
                if name in as_fp16 and n.op_type not in ("Cast", "Shape", "Size", "CastLike"):
                    n.input[i] = cast(name, _F32)
        new_nodes.append(n)
    # graph outputs produced in float16 are renamed and cast back to the float32 name
    for out in g.output:
        if out.name in as_fp16:
            inner = unique(f"{out.name}_fp16")
            for n in new_nodes:
                for i, name in enumerate(n.output):
                    if name == out.name:
                        n.output[i] = inner
                for i, name in enumerate(n.input):
                    if name == out.name:
                        n.input[i] = inner
            new_nodes.append(helper.make_node("Cast", [inner], [out.name], to=_F32, name=unique(f"Cast_{out.name}")))
            as_fp16.discard(out.name)
            as_fp16.add(inner)
    # value_info types follow: float16 where the tensor now lives in float16
    for vi in g.value_info:
        if vi.name in as_fp16:
            vi.type.tensor_type.elem_type = _F16
    # the input graph is in topological order and each Cast was placed just before its first
    # reader, so the new order is topological too
    del g.node[:]
    g.node.extend(new_nodes)
    return Fp16Result(model, converted, kept, len(new_nodes) - len(fp16_nodes) - len(kept), clipped)

