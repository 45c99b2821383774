"""Why ``trtcompress bench`` keeps only the timed model's ONNX Runtime session alive.

    python benchmarks/bench_harness.py [--batch 32] [--runs 200] [MODEL ...]

Times each model (default: the Fashion CNN in FP32 and its ``--target cpu`` form) three ways in
one process, 2 intra-op threads: in blocks of ``--runs`` runs with the other sessions idle but
alive; interleaved 6 runs per turn with every session alive; and interleaved with worker spinning
off. Prints the p50 of each, and the ratio of the first model to each other one.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(Path(__file__).resolve().parent))


def _session(path: str, spin: bool):
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads, so.inter_op_num_threads, so.log_severity_level = 2, 1, 3
    if not spin:
        so.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])


def _times(sess, feed, n: int) -> list[float]:
    out = []
    for _ in range(n):
        t = time.perf_counter()
        sess.run(None, feed)
        out.append(time.perf_counter() - t)
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("models", nargs="*")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--runs", type=int, default=200)
    args = ap.parse_args()
    models = args.models
    if not models:
        from _int8_models import fp32_path, quantized

        models = [str(fp32_path("fashion_cnn")), str(quantized("fashion_cnn", "cpu")[0])]
    for mode, spin in (("spinning on", True), ("spinning off", False)):
        sessions = [_session(m, spin) for m in models]
        inp = sessions[0].get_inputs()[0]
        shape = [args.batch] + [d if isinstance(d, int) else 1 for d in inp.shape[1:]]
        feed = {inp.name: np.random.default_rng(0).random(shape, dtype=np.float32)}
        for s in sessions:
            _times(s, feed, 20)
        rows = {}
        if spin:
            rows["blocks, others idle"] = [np.median(_times(s, feed, args.runs)) for s in sessions]
        inter: list[list[float]] = [[] for _ in sessions]
        for _ in range(args.runs // 6):
            for s, t in zip(sessions, inter):
                t += _times(s, feed, 6)
        rows[f"interleaved, all alive, {mode}"] = [np.median(t) for t in inter]
        for label, meds in rows.items():
            ratios = ", ".join(f"{meds[0] / m:.2f}x" for m in meds[1:])
            print(f"{label:38s} " + "  ".join(f"{m * 1e3:7.2f} ms" for m in meds) + f"   first / others: {ratios}")


if __name__ == "__main__":
    main()
