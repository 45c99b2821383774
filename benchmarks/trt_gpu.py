"""On a machine with TensorRT and an NVIDIA GPU: the TensorRT tests, then the GPU benchmarks, in one go.

    python benchmarks/trt_gpu.py [--out trt_gpu.json] [--iterations 200] [--skip-tests]

1. ``pytest -m "trt or gpu"`` over the whole suite (every test that needs TensorRT or a GPU).
2. EfficientNet-Lite0 (pretrained, dynamic batch; the TensorRT Q/DQ form from one entropy
   calibration on the photos' calib split, as ``int8_cpu_speed.py`` makes it): FP32, FP16 and
   INT8 engines (INT8 strongly typed as the Q/DQ model says, and INT8 with the remaining layers
   in FP16), GPU compute time (CUDA events, no copies) at batch 1 and 32, CUDA graphs on.
   Target (issue 13): the INT8 engine faster than the FP16 engine.
3. 2:4 sparsity: a stack of 3x3 Convs with 256 and 512 channels at 28x28, explicit Q/DQ INT8,
   dense against 2:4-pruned weights, SPARSE_WEIGHTS on for both; the builder log says which layers
   took sparse kernels. Target: 2:4 INT8 at least 1.3x dense INT8.

Prints one JSON document (also written to ``--out``) and Markdown lines for benchmarks/RESULTS.md.
"""
from __future__ import annotations

import argparse
import datetime
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(Path(__file__).resolve().parent))


def run_tests() -> int:
    cmd = [sys.executable, "-m", "pytest", "-q", "-m", "trt or gpu", str(ROOT / "tests")]
    print("$", " ".join(cmd), flush=True)
    return subprocess.run(cmd, cwd=ROOT).returncode


def wide_convs(path: Path, sparse: bool, channels=(256, 256, 512, 512), hw: int = 28, seed: int = 0) -> Path:
    """x[N,c0,hw,hw] -> (Q/DQ -> Conv 3x3 -> Relu) per width: INT8 explicit, per-channel weights."""
    from trtcompress.sparsity.masks import prune_2to4

    rng = np.random.default_rng(seed)
    inits, nodes = [], []
    prev, c_in = "x", channels[0]
    for i, c in enumerate(channels):
        w = (rng.standard_normal((c, c_in, 3, 3)) * (2.0 / (c_in * 9)) ** 0.5).astype(np.float32)
        if sparse:
            w, _ = prune_2to4(w, 1)
        s = np.maximum(np.abs(w).reshape(c, -1).max(1), 1e-8).astype(np.float32) / 127
        inits += [
            numpy_helper.from_array(np.clip(np.round(w / s[:, None, None, None]), -127, 127).astype(np.int8), f"w{i}_q"),
            numpy_helper.from_array(s, f"w{i}_s"), numpy_helper.from_array(np.zeros(c, np.int8), f"w{i}_z"),
            numpy_helper.from_array(np.float32(0.05), f"a{i}_s"), numpy_helper.from_array(np.int8(0), f"a{i}_z"),
        ]
        nodes += [
            helper.make_node("QuantizeLinear", [prev, f"a{i}_s", f"a{i}_z"], [f"q{i}"]),
            helper.make_node("DequantizeLinear", [f"q{i}", f"a{i}_s", f"a{i}_z"], [f"dq{i}"]),
            helper.make_node("DequantizeLinear", [f"w{i}_q", f"w{i}_s", f"w{i}_z"], [f"w{i}"], axis=0),
            helper.make_node("Conv", [f"dq{i}", f"w{i}"], [f"c{i}"], name=f"conv{i}_{c}ch", pads=[1, 1, 1, 1]),
            helper.make_node("Relu", [f"c{i}"], [f"r{i}"]),
        ]
        prev, c_in = f"r{i}", c
    graph = helper.make_graph(nodes, "wide_convs", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", channels[0], hw, hw])],
                              [helper.make_tensor_value_info(prev, TensorProto.FLOAT, ["N", channels[-1], hw, hw])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, path)
    return path


def measure(engines: dict[str, Path], batches: tuple[int, ...], iterations: int) -> dict:
    from trtcompress.benchmark import BenchConfig, bench

    result = bench(list(engines.values()), BenchConfig(batch_sizes=batches, iterations=iterations, rounds=5, warmup=20, cuda_graph=True), backend="trt", labels=list(engines))
    return {str(b): {label: {"gpu_p50_ms": s["gpu"]["p50_ms"], "gpu_p99_ms": s["gpu"]["p99_ms"], "end_to_end_p50_ms": s["p50_ms"],
                             "throughput_per_s": s["gpu"]["throughput_per_s"], "gpu_memory_used_bytes": s["gpu"].get("gpu_memory_used_bytes")}
                     for label, s in per.items()} for b, per in result.results.items()}


def efficientnet(work: Path, iterations: int) -> dict:
    from _int8_models import fp32_path, quantized

    from trtcompress.trt.build import build_engine
    from trtcompress.trt.config import BuildConfig

    fp32, (qdq, _) = fp32_path("efficientnet_lite0"), quantized("efficientnet_lite0", "tensorrt")
    shapes = ("x:1x3x224x224,x:32x3x224x224,x:32x3x224x224",)
    builds = {
        "fp32": build_engine(fp32, work / "effnet_fp32.engine", BuildConfig(shapes=shapes)),
        "fp16": build_engine(fp32, work / "effnet_fp16.engine", BuildConfig(shapes=shapes, fp16=True)),
        "int8": build_engine(qdq, work / "effnet_int8.engine", BuildConfig(shapes=shapes)),
        "int8+fp16": build_engine(qdq, work / "effnet_int8_fp16.engine", BuildConfig(shapes=shapes, fp16=True)),
    }
    times = measure({k: r.engine_path for k, r in builds.items()}, (1, 32), iterations)
    for b, per in times.items():
        best_int8 = min(per["int8"]["gpu_p50_ms"], per["int8+fp16"]["gpu_p50_ms"])
        per["int8_speedup_vs_fp16"] = per["fp16"]["gpu_p50_ms"] / best_int8
    return {"times": times, "precision_counts": {k: r.report["precision_counts"] for k, r in builds.items()},
            "warnings": {k: r.warnings for k, r in builds.items() if r.warnings}}


def sparsity(work: Path, iterations: int) -> dict:
    from trtcompress.trt.build import build_engine
    from trtcompress.trt.config import BuildConfig

    shapes = ("x:1x256x28x28,x:32x256x28x28,x:32x256x28x28",)
    dense = build_engine(wide_convs(work / "dense.onnx", False), work / "dense_int8.engine", BuildConfig(shapes=shapes, sparse="on"))
    sparse = build_engine(wide_convs(work / "sparse.onnx", True), work / "sparse_int8.engine", BuildConfig(shapes=shapes, sparse="on"))
    times = measure({"dense int8": dense.engine_path, "2:4 int8": sparse.engine_path}, (1, 32), iterations)
    for per in times.values():
        per["sparse_speedup"] = per["dense int8"]["gpu_p50_ms"] / per["2:4 int8"]["gpu_p50_ms"]
    return {"times": times, "sparsity_log": sparse.report["sparsity"], "precision_counts": sparse.report["precision_counts"]}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="trt_gpu.json")
    ap.add_argument("--iterations", type=int, default=200)
    ap.add_argument("--skip-tests", action="store_true")
    args = ap.parse_args()
    from trtcompress.trt.gpu import device_info
    from trtcompress.trt.version import installed_version

    doc = {"date": datetime.date.today().isoformat(), "tensorrt": str(installed_version()), "gpu": vars(device_info())}
    if not args.skip_tests:
        doc["tests_exit_code"] = run_tests()
    with tempfile.TemporaryDirectory() as d:
        work = Path(d)
        doc["efficientnet_lite0"] = efficientnet(work, args.iterations)
        doc["sparsity_2to4"] = sparsity(work, args.iterations)
    Path(args.out).write_text(json.dumps(doc, indent=2, default=str))
    print(json.dumps(doc, indent=2, default=str))
    e, s = doc["efficientnet_lite0"]["times"], doc["sparsity_2to4"]["times"]
    print(f"\n## TensorRT {doc['tensorrt']} on {doc['gpu']['name']} ({doc['date']}): `python benchmarks/trt_gpu.py`")
    for b in ("1", "32"):
        print(f"- EfficientNet-Lite0 batch {b}, GPU p50 ms: FP32 {e[b]['fp32']['gpu_p50_ms']:.3f}, FP16 {e[b]['fp16']['gpu_p50_ms']:.3f}, "
              f"INT8 {e[b]['int8']['gpu_p50_ms']:.3f}, INT8+FP16 {e[b]['int8+fp16']['gpu_p50_ms']:.3f}: INT8 {e[b]['int8_speedup_vs_fp16']:.2f}x FP16 (target > 1)")
        print(f"- 256/512-channel Convs batch {b}: 2:4 INT8 {s[b]['sparse_speedup']:.2f}x dense INT8 (target >= 1.3)")
    return int(doc.get("tests_exit_code", 0))


if __name__ == "__main__":
    from trtcompress.errors import UserError

    try:
        raise SystemExit(main())
    except UserError as e:
        raise SystemExit(f"trt_gpu.py: {e}")
