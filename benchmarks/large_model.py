"""INT8 quantization of a model over 2 GB (ONNX external data): ours against ONNX Runtime's
``quantize_static``, each as a whole command in a fresh process.

The model is one 2.15 GB MatMul (23200 x 23200 float32, deterministic random weights) and a Relu,
calibrated on 16 random samples; what is measured is what the size costs: wall time, peak
resident memory (the process's own high-water mark) and the output's SQNR against FP32 on 4 other
samples (ONNX Runtime, basic graph optimisation).

    .venv/bin/python benchmarks/large_model.py [--tools ours,ort] [--width 23200]
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
WORK = ROOT / "benchmarks" / "_work" / "large"


def build(width: int) -> Path:
    """The model and its calibration data under WORK (written once per width)."""
    import onnx
    from onnx import TensorProto, helper

    from _cache import digest

    d = WORK / f"{width}-{digest(Path(__file__).resolve(), width)}"  # rebuilt when this builder changes
    model = d / "fp32.onnx"
    if model.is_file():
        return d
    (d / "calib").mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    with open(d / "fp32.onnx.data", "wb") as f:  # row blocks: the whole matrix is never in memory twice
        for start in range(0, width, 1024):
            rows = min(1024, width - start)
            f.write((rng.standard_normal((rows, width), dtype=np.float32) / np.float32(np.sqrt(width))).tobytes())
    w = TensorProto(name="w", data_type=TensorProto.FLOAT, dims=[width, width], data_location=TensorProto.EXTERNAL)
    for key, value in (("location", "fp32.onnx.data"), ("offset", "0"), ("length", str(width * width * 4))):
        w.external_data.add(key=key, value=value)
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["h"], name="mm"), helper.make_node("Relu", ["h"], ["y"], name="relu")],
        "large", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", width])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", width])], [w])
    np.savez(d / "calib" / "000.npz", x=rng.standard_normal((16, width), dtype=np.float32))
    np.savez(d / "eval.npz", x=rng.standard_normal((4, width), dtype=np.float32))
    onnx.save_model(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(model))
    return d


def _ort(model: str, calib: str, out: str) -> None:
    from onnxruntime.quantization import CalibrationDataReader, CalibrationMethod, QuantFormat, QuantType, quantize_static

    x = np.load(calib)["x"]

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.it = iter([{"x": x[i : i + 8]} for i in range(0, len(x), 8)])

        def get_next(self):
            return next(self.it, None)

    quantize_static(model, out, Reader(), quant_format=QuantFormat.QDQ, per_channel=True, activation_type=QuantType.QInt8,
                    weight_type=QuantType.QInt8, calibrate_method=CalibrationMethod.Entropy, use_external_data_format=True,
                    extra_options={"ActivationSymmetric": True, "WeightSymmetric": True, "CalibTensorRangeSymmetric": True})


def command(tool: str, d: Path, out: Path) -> list[str]:
    if tool == "ours":
        return [str(Path(sys.executable).parent / "trtcompress"), "quantize", str(d / "fp32.onnx"), "--calib", str(d / "calib"),
                "--method", "entropy", "--target", "tensorrt", "-o", str(out)]
    return [sys.executable, __file__, "_ort", str(d / "fp32.onnx"), str(d / "calib" / "000.npz"), str(out)]


def measured(cmd: list[str], log: Path) -> tuple[float, float, int]:
    """Wall seconds, peak resident GB and exit status of ``cmd``."""
    t = time.perf_counter()
    with open(log, "w") as f:
        proc = subprocess.Popen(cmd, stdout=f, stderr=subprocess.STDOUT, cwd=ROOT)
        _, status, usage = os.wait4(proc.pid, 0)
    return time.perf_counter() - t, usage.ru_maxrss / (1 << 20), os.waitstatus_to_exitcode(status)


def sqnr_db(d: Path, quantized: Path) -> float:
    import onnxruntime as ort

    x = np.load(d / "eval.npz")["x"]
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
    outs = []
    for path in (d / "fp32.onnx", quantized):
        outs.append(ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"]).run(None, {"x": x})[0])
    ref, got = outs
    return round(float(10 * np.log10(np.sum(ref.astype(np.float64) ** 2) / np.sum((ref - got).astype(np.float64) ** 2))), 2)


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "_ort":
        _ort(*sys.argv[2:5])
        return
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tools", default="ours,ort")
    ap.add_argument("--width", type=int, default=23200)
    args = ap.parse_args()
    d = build(args.width)
    size = sum(p.stat().st_size for p in d.glob("fp32.onnx*"))
    result = {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "width": args.width, "fp32_bytes": size, "tools": {}}
    for tool in args.tools.split(","):
        out = d / f"int8_{tool}.onnx"
        wall, peak, rc = measured(command(tool, d, out), d / f"{tool}.log")
        row = {"wall_s": round(wall, 1), "peak_rss_gb": round(peak, 2), "exit": rc}
        if rc == 0:
            row["int8_bytes"] = sum(p.stat().st_size for p in d.glob(f"int8_{tool}.onnx*"))
            row["sqnr_db"] = sqnr_db(d, out)
        else:
            row["log_tail"] = (d / f"{tool}.log").read_text()[-500:]
        result["tools"][tool] = row
        print(json.dumps({tool: row}), flush=True)
    (WORK / "result.json").write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
