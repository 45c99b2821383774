"""CPU speed of the INT8 forms against FP32, measured interleaved in one run (ONNX Runtime, 2 threads).

    python benchmarks/int8_cpu_speed.py [--models efficientnet_lite0,fashion_cnn,fashion_vit] [--batches 1,32]

Per model: FP32; ``--target cpu`` with the default weights (auto: int8 with VNNI, else int7 on
layers reading signed tensors); ``--target cpu`` with exact uint8 weights there; and the TensorRT
Q/DQ form as ONNX Runtime runs it. All from one calibration. Prints a JSON line per model and a
Markdown table (speedup = FP32 p50 latency / model p50 latency).
"""
from __future__ import annotations

import argparse
import datetime
import json
import platform
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _int8_models import MODELS, fp32_path, quantized  # noqa: E402

from trtcompress.benchmark import BenchConfig, bench  # noqa: E402
from trtcompress.quant.lower_cpu import cpu_has_vnni  # noqa: E402
from trtcompress.runners import RunnerOptions  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--models", default=",".join(MODELS))
    ap.add_argument("--batches", default="1,32")
    ap.add_argument("--iterations", type=int, default=24)
    ap.add_argument("--rounds", type=int, default=8)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    batches = tuple(int(b) for b in args.batches.split(","))
    rows = []
    print(f"# {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC, {platform.processor() or platform.machine()}, VNNI: {cpu_has_vnni()}, threads {args.threads}")
    for name in args.models.split(","):
        files = {
            "fp32": fp32_path(name),
            "cpu (auto weights)": quantized(name, "cpu")[0],
            "cpu (every planned layer int8)": quantized(name, "cpu", cpu_layer_rule="all")[0],
            "cpu (uint8 weights)": quantized(name, "cpu", cpu_weights="uint8")[0],
            "tensorrt Q/DQ in ORT": quantized(name, "tensorrt")[0],
        }
        res = bench(list(files.values()), BenchConfig(batch_sizes=batches, warmup=3, iterations=args.iterations, rounds=args.rounds),
                    options=RunnerOptions(threads=args.threads), labels=list(files))
        print(json.dumps({"model": name, **res.to_dict()}))
        for b in batches:
            for label in files:
                rows.append((name, b, label, res.results[b][label]["p50_ms"], res.ratios[b][label]))
    print("\n| model | batch | form | p50 ms | speedup vs FP32 |\n|---|---|---|---|---|")
    for name, b, label, ms, ratio in rows:
        print(f"| {name} | {b} | {label} | {ms:.2f} | {ratio:.2f}x |")


if __name__ == "__main__":
    main()
