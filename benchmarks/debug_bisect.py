"""Cost of ``trtcompress debug`` on the shipped Fashion models: runs and seconds to name a planted bad layer.

For each model: quantize (TensorRT form, entropy, 256 training images), divide one weight scale of
the middle compute layer by 100, then run the bisection against FP32 on 128 test images; also the
unchanged Q/DQ model. ``python benchmarks/debug_bisect.py``
"""
from __future__ import annotations

import tempfile
import time
from pathlib import Path

import numpy as np
import onnx_ir as ir
from onnx import numpy_helper

from trtcompress import zoo
from trtcompress.model_io import load_model, save_model
from trtcompress.quant.bisect import DebugConfig, find_divergent_layers, quantized_layers
from trtcompress.stages.quantize import QuantizeConfig, quantize


def _weight_layers(q, by_name):
    out = []
    for name in quantized_layers(q):
        node = by_name[name]
        p = node.inputs[1].producer() if len(node.inputs) > 1 else None
        if node.op_type in ("Conv", "Gemm", "MatMul") and p is not None and p.op_type == "DequantizeLinear":
            q_node = p.inputs[0].producer()
            if q_node is not None and q_node.inputs[0].is_initializer():
                out.append(name)
    return out


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        x, _ = zoo.fashion_mnist("train", limit=256)
        np.savez(tmp / "cal.npz", x=x)
        feeds = [{"x": zoo.fashion_mnist("test", limit=128)[0]}]
        for name in zoo.FASHION_MODELS:
            fp32 = zoo.onnx_path(name)
            q = quantize(load_model(fp32), QuantizeConfig(calib=str(tmp / "cal.npz"), sensitivity_samples=0, progress=False, refine_ranges=False)).model
            save_model(q, tmp / "q.onnx")
            t0 = time.perf_counter()
            r = find_divergent_layers(fp32, tmp / "q.onnx", feeds, DebugConfig())
            print(f"{name} as quantized: cosine {r.metric_quantized:.4f}; layers {[f.node for f in r.layers]}; {r.runs} runs, {time.perf_counter() - t0:.1f} s")
            by_name = {n.name: n for n in ir.from_proto(q).graph}
            cands = _weight_layers(q, by_name)
            target = cands[len(cands) // 2]
            dq = by_name[target].inputs[1].producer()
            scales = {dq.inputs[1].name, dq.inputs[0].producer().inputs[1].name}
            for t in q.graph.initializer:
                if t.name in scales:
                    t.CopyFrom(numpy_helper.from_array((numpy_helper.to_array(t) / 100).astype(np.float32), t.name))
            save_model(q, tmp / "bad.onnx")
            t0 = time.perf_counter()
            r = find_divergent_layers(fp32, tmp / "bad.onnx", feeds, DebugConfig())
            print(f"{name} with {target} weight scale / 100: cosine {r.metric_quantized:.4f} -> {r.metric_fixed:.4f}; found {[f.node for f in r.layers]} "
                  f"among {r.quantized_layers} quantized layers in {r.runs} runs, {time.perf_counter() - t0:.1f} s")


if __name__ == "__main__":
    main()
