"""PP-OCRv4's text recognizer (rapidocr-onnxruntime's ``ch_PP-OCRv4_rec_infer.onnx``, a
paddle2onnx export) in INT8: how much of the text FP32 reads each written form still reads.

    python benchmarks/ocr_int8.py [--variants none,bias,sq=0.75,ada] [--targets tensorrt,cpu]

Calibration: every window of the upright page (``zoo.text_lines("calib")``); judged on the rotated
page (``zoo.text_lines("heldout")``) by greedy CTC decoding: character accuracy = 1 - edits / FP32's
characters, and the share of windows whose text is identical. Variants as in ptq_accuracy.py. The
TensorRT form runs at ONNX Runtime's ``basic`` level (the exact Q/DQ arithmetic), the CPU form as
deployed.
"""
from __future__ import annotations

import argparse
import datetime
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import onnx

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "benchmarks")]

from ptq_accuracy import options  # noqa: E402
from tests.corpus.builders import RAPIDOCR  # noqa: E402
from tests.corpus.checks import ctc_char_accuracy, ctc_text, run  # noqa: E402

from trtcompress import zoo  # noqa: E402
from trtcompress.stages.normalize import with_normalize  # noqa: E402
from trtcompress.stages.quantize import QuantizeConfig, quantize  # noqa: E402

MODEL = RAPIDOCR / "ch_PP-OCRv4_rec_infer.onnx"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--variants", default="none,bias,sq=0.75,ada")
    ap.add_argument("--targets", default="tensorrt,cpu")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    print(f"# {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC")
    model = onnx.load(MODEL)
    calib, ev = zoo.text_lines("calib"), {"x": zoo.text_lines("heldout")}
    ref = run(model, ev)[0]
    print(f"calibration windows {len(calib)}, judged windows {len(ev['x'])}, FP32 characters {sum(map(len, ctc_text(ref)))}")
    print("| technique | form | character accuracy | identical windows | quantize s |\n|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        np.save(Path(tmp) / "x.npy", calib)
        for variant in args.variants.split(","):
            for target in args.targets.split(","):
                cfg = QuantizeConfig(target=target, calib=tmp, inputs=("x:1x3x48x192",), progress=False, threads=args.threads, **options(variant))
                t = time.perf_counter()
                out = with_normalize(quantize, model, cfg).model
                seconds = time.perf_counter() - t
                got = run(out, ev, exact_qdq=target == "tensorrt")[0]
                same = np.mean([a == b for a, b in zip(ctc_text(ref), ctc_text(got))])
                print(f"| {variant} | {target} | {ctc_char_accuracy(ref, got):.2%} | {same:.1%} | {seconds:.0f} |", flush=True)


if __name__ == "__main__":
    main()
