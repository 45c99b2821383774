"""Post-training techniques (quant.ptq) alone and combined: EfficientNet-Lite0 top-1 agreement
with FP32 on real photos, both written forms, and what each technique costs.

    python benchmarks/ptq_accuracy.py [--splits tune,heldout] [--variants none,cle,bias,cle+bias]

Calibration: the photos' calib split (every view, batch 32), recalibrated per variant (CLE and bias
correction change the float model the ranges are taken on). Each quantized model is evaluated on
the ``tune`` split (where on/off defaults are chosen) and the ``heldout`` split (the figure
quoted). TensorRT form: ONNX Runtime with graph optimisations off, the exact Q/DQ arithmetic
TensorRT implements; CPU form: as deployed (optimisations on; weights as --cpu-weights auto picks
for this CPU).
"""
from __future__ import annotations

import argparse
import datetime
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _int8_models import eval_batches, fp32_path, session  # noqa: E402

from trtcompress.model_io import load_model  # noqa: E402
from trtcompress.stages.quantize import QuantizeConfig, quantize  # noqa: E402

VARIANTS = {"none": {}, "cle": {"cle": True}, "bias": {"bias_correction": True}, "cle+bias": {"cle": True, "bias_correction": True}}


def _outputs(model, batches, optimize: bool) -> np.ndarray:
    s = session(model, optimize=optimize)
    name = s.get_inputs()[0].name
    return np.concatenate([s.run(None, {name: x})[0] for x in batches])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--splits", default="tune,heldout")
    ap.add_argument("--variants", default=",".join(VARIANTS))
    ap.add_argument("--targets", default="tensorrt,cpu")
    args = ap.parse_args()
    print(f"# {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC")
    src = fp32_path("efficientnet_lite0")
    fp32 = load_model(src)
    data = {split: eval_batches("efficientnet_lite0", split)[0] for split in args.splits.split(",")}
    ref = {split: _outputs(src, b, True) for split, b in data.items()}
    rows = []
    for variant in args.variants.split(","):
        for target in args.targets.split(","):
            cfg = QuantizeConfig(calib="photos:calib", batch=32, target=target, progress=False, **VARIANTS[variant])
            t0 = time.perf_counter()
            r = quantize(fp32, cfg)
            seconds = time.perf_counter() - t0
            row = {"variant": variant, "target": target, "quantize_seconds": round(seconds, 1),
                   "cle_seconds": r.report.get("cle", {}).get("seconds"), "cle_pairs": len(r.report.get("cle", {}).get("pairs", [])),
                   "bias_seconds": r.report.get("bias_correction", {}).get("seconds"),
                   "bias_layers": len(r.report.get("bias_correction", {}).get("layers", []))}
            for split, batches in data.items():
                out = _outputs(r.model, batches, optimize=target == "cpu")
                row[f"top1_{split}"] = float(np.mean(out.argmax(1) == ref[split].argmax(1)))
                row[f"samples_{split}"] = len(out)
            rows.append(row)
            print(json.dumps(row), flush=True)
    splits = list(data)
    print("\n| technique | form | " + " | ".join(f"top-1 agreement, {s} ({len(ref[s])} views)" for s in splits) + " | quantize s | of which CLE s / bias correction s |")
    print("|---|---|" + "---|" * len(splits) + "---|---|")
    for r in rows:
        tops = " | ".join(f"{100 * r[f'top1_{s}']:.2f}%" for s in splits)
        print(f"| {r['variant']} | {r['target']} | {tops} | {r['quantize_seconds']} | {r['cle_seconds'] or '-'} / {r['bias_seconds'] or '-'} |")


if __name__ == "__main__":
    main()
