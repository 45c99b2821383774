"""Accuracy of the INT8 models against FP32 on held-out real data, every supported layer in INT8.

    python benchmarks/int8_accuracy.py [--models ...] [--methods entropy,max,percentile,mse]

EfficientNet-Lite0: top-1 agreement with FP32 on the photos' eval split (192 crops/flips of 16
photos; calibration uses the disjoint calib split). Fashion-MNIST CNN and ViT: test accuracy on
all 10 000 test images (calibration: 1024 train images). The TensorRT form is evaluated with
ONNX Runtime's graph optimisations off, which computes exactly the Q/DQ arithmetic TensorRT
implements; the CPU form as deployed (optimisations on). Also reported: the TensorRT form under
ONNX Runtime's default optimisations (its int8 fusions on this CPU).
"""
from __future__ import annotations

import argparse
import datetime
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _int8_models import MODELS, eval_batches, fp32_path, quantized, session  # noqa: E402


def _outputs(path, batches, optimize=True):
    s = session(path, optimize=optimize)
    name = s.get_inputs()[0].name
    return np.concatenate([s.run(None, {name: x})[0] for x in batches])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--models", default=",".join(MODELS))
    ap.add_argument("--methods", default="entropy")
    ap.add_argument("--no-clip-bounds", action="store_true")
    ap.add_argument("--photos", default="eval", help="EfficientNet-Lite0's photo split: eval (= tune) or heldout")
    args = ap.parse_args()
    print(f"# {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC")
    rows = []
    for name in args.models.split(","):
        batches, labels = eval_batches(name, args.photos)
        ref = _outputs(fp32_path(name), batches)
        for method in args.methods.split(","):
            trt_path, report = quantized(name, "tensorrt", method, clip_bounds=not args.no_clip_bounds)
            cpu_path, cpu_report = quantized(name, "cpu", method, clip_bounds=not args.no_clip_bounds)
            all_path, all_report = quantized(name, "cpu", method, clip_bounds=not args.no_clip_bounds, cpu_layer_rule="all")
            forms = {
                "tensorrt (exact Q/DQ)": _outputs(trt_path, batches, optimize=False),
                "cpu": _outputs(cpu_path, batches),
                "cpu (every planned layer int8)": _outputs(all_path, batches),
                "tensorrt form, ORT optimised": _outputs(trt_path, batches),
            }
            for form, out in forms.items():
                row = {"model": name, "method": method, "form": form, "samples": len(out),
                       "top1_agreement": float(np.mean(out.argmax(1) == ref.argmax(1))),
                       "layers_int8": {"cpu": cpu_report, "cpu (every planned layer int8)": all_report}[form]["cpu"]["int8_layers"]
                       if form.startswith("cpu") else report["plan"]["quantized_nodes"]}
                if labels is not None:
                    row["accuracy"] = float(np.mean(out.argmax(1) == labels))
                    row["fp32_accuracy"] = float(np.mean(ref.argmax(1) == labels))
                    row["delta_points"] = 100 * (row["accuracy"] - row["fp32_accuracy"])
                rows.append(row)
                print(json.dumps(row))
            worst = report.get("layer_error", [])[:3]
            print(json.dumps({"model": name, "method": method, "most_sensitive": worst, "calibration_seconds": report.get("calibration_seconds")}))
    print("\n| model | method | form | layers INT8 | top-1 agreement | accuracy (FP32) |\n|---|---|---|---|---|---|")
    for r in rows:
        acc = f"{100 * r['accuracy']:.2f}% ({100 * r['fp32_accuracy']:.2f}%)" if "accuracy" in r else "-"
        print(f"| {r['model']} | {r['method']} | {r['form']} | {r['layers_int8']} | {100 * r['top1_agreement']:.2f}% | {acc} |")


if __name__ == "__main__":
    main()
