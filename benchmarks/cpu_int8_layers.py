"""Does INT8 pay per layer in the CPU form? Single-Conv ONNX models, FP32 vs the real lowering.

    python benchmarks/cpu_int8_layers.py [--threads 2] [--iterations 40]

Each model is one Conv (dense 1x1, dense 3x3 or depthwise 3x3) followed by a ReLU and a float Neg,
so its input arrives in float and its output leaves in float: the CPU form pays the QuantizeLinear
and the DequantizeLinear at its boundaries, as a lone int8 layer between float layers does, and
the conv writes uint8 (QLinearConv, as inside a network; a conv whose output is a float graph
output is a ConvInteger with a float rescale instead, a slower kernel). Calibrated by
the product (max) on random data and lowered by ``trtcompress.quant.lower_cpu``. Prints one
Markdown row per shape: MACs per output element, FP32 and INT8 p50 latency, speedup (FP32/INT8).
"""
from __future__ import annotations

import argparse
import datetime
import time

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

from trtcompress.quant.calibrate import CollectConfig, calibrate
from trtcompress.quant.lower_cpu import cpu_has_vnni, lower_cpu
from trtcompress.quant.placement import plan_quantization


def conv_model(c: int, hw: int, k: int, depthwise: bool) -> onnx.ModelProto:
    rng = np.random.default_rng(0)
    group = c if depthwise else 1
    w = (rng.standard_normal((c, c // group, k, k)) * 0.1).astype(np.float32)
    b = (rng.standard_normal(c) * 0.1).astype(np.float32)
    nodes = [helper.make_node("Conv", ["x", "w", "b"], ["c"], name="conv", group=group, pads=[k // 2] * 4),
             helper.make_node("Relu", ["c"], ["r"], name="relu"),
             helper.make_node("Neg", ["r"], ["y"], name="float_reader")]
    g = helper.make_graph(nodes, "one_conv", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, c, hw, hw])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, c, hw, hw])],
                          [numpy_helper.from_array(w, "w"), numpy_helper.from_array(b, "b")])
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)])


def p50(model: onnx.ModelProto, x: np.ndarray, threads: int, iterations: int) -> float:
    so = ort.SessionOptions()
    so.intra_op_num_threads, so.inter_op_num_threads, so.log_severity_level = threads, 1, 3
    s = ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"])
    for _ in range(3):
        s.run(None, {"x": x})
    t = []
    for _ in range(iterations):
        t0 = time.perf_counter()
        s.run(None, {"x": x})
        t.append(time.perf_counter() - t0)
    return float(np.median(t)) * 1e3


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--iterations", type=int, default=40)
    args = ap.parse_args()
    print(f"# {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC, VNNI: {cpu_has_vnni()}, threads {args.threads}")
    print("| kind | channels | spatial | MACs/output | FP32 ms | INT8 ms | speedup |")
    print("|---|---|---|---|---|---|---|")
    grid = [("dense 1x1", 1, False), ("dense 3x3", 3, False), ("depthwise 3x3", 3, True)]
    for kind, k, dw in grid:
        for c in (8, 16, 32, 64, 128, 256):
            for hw in (14, 28, 56, 112):
                if c * hw * hw > 256 * 56 * 56:
                    continue  # keep the run short: the largest activations add nothing new
                model = conv_model(c, hw, k, dw)
                x = np.random.default_rng(1).standard_normal((1, c, hw, hw)).astype(np.float32)
                plan = plan_quantization(model)
                table = calibrate(model, plan.activation_tensors, [{"x": x}], method="max", config=CollectConfig(progress=False))
                low = lower_cpu(model, plan, table).model
                # interleave to share the load both ways
                f1, i1, f2, i2 = (p50(m, x, args.threads, args.iterations // 2) for m in (model, low, model, low))
                f, i = min(f1, f2), min(i1, i2)
                macs = (1 if dw else c) * k * k
                print(f"| {kind} | {c} | {hw} | {macs} | {f:.3f} | {i:.3f} | {f / i:.2f} |", flush=True)


if __name__ == "__main__":
    main()
