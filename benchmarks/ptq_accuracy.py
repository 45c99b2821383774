"""Post-training techniques (quant.ptq) alone and combined: top-1 agreement with FP32 (and logits
cosine) of both written forms, and what each technique costs.

    python benchmarks/ptq_accuracy.py [--model efficientnet_lite0|fashion_vit] [--variants none,cle,bias,cle+bias,sq=0.5,...]

A variant is techniques joined by "+": cle, bias (bias correction), ada or ada=ITERATIONS
(AdaRound), sq=ALPHA (SmoothQuant), ss=N (N sensitivity samples instead of 8).
EfficientNet-Lite0: calibration on the photos' calib split (every view, batch 32); evaluated on the
``tune`` split (where on/off defaults are chosen) and the ``heldout`` split (the figure quoted).
Fashion ViT: calibration on 1024 training images; tune = 5000 other training images, heldout =
the 10 000 test images (labels too). all-MiniLM-L6-v2 (benchmarks/_minilm.py): calibration on 256
sentences, tune and heldout 512 sentences each of real English prose; the figure is the mean
cosine of the sentence embeddings with FP32 (top-1 agreement there is the argmax dimension's, not
meaningful). Each variant is recalibrated (the techniques change the float
model the ranges are taken on). TensorRT form: ONNX Runtime with graph optimisations off, the exact Q/DQ arithmetic
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

from _int8_models import calib_spec, eval_batches, fp32_path, session  # noqa: E402

from trtcompress.model_io import load_model  # noqa: E402
from trtcompress.stages.quantize import QuantizeConfig, quantize  # noqa: E402

DEFAULT_VARIANTS = {"efficientnet_lite0": "none,cle,bias,cle+bias", "fashion_vit": "none,sq=0.25,sq=0.5,sq=0.75,bias,sq=0.5+bias",
                    "minilm": "none,sq=0.25,sq=0.5,sq=0.75,bias,sq=0.5+bias"}


def options(variant: str) -> dict:
    out: dict = {}
    for part in variant.split("+"):
        if part == "cle":
            out["cle"] = True
        elif part == "bias":
            out["bias_correction"] = True
        elif part == "ada":
            out["adaround"] = True
        elif part.startswith("ada="):
            out["adaround"] = True
            out["adaround_iterations"] = int(part[4:])
        elif part.startswith("ss="):  # sensitivity samples (the range choice and error report), default 8
            out["sensitivity_samples"] = int(part[3:])
        elif part.startswith("sq="):
            out["smoothquant"] = float(part[3:])
        elif part != "none":
            raise SystemExit(f"unknown technique {part!r}")
    return out


def eval_data(model: str, splits: list[str]) -> dict[str, tuple[list, np.ndarray | None]]:
    if model == "minilm":
        import _minilm

        out = {}
        for split in splits:
            x = _minilm.tokens(_minilm.sentences(split)[:512])
            out[split] = ([{k: v[i : i + 64] for k, v in x.items()} for i in range(0, len(x["input_ids"]), 64)], None)
        return out
    if model == "efficientnet_lite0":
        return {s: eval_batches(model, s) for s in splits}
    from trtcompress import zoo

    out = {}
    if "tune" in splits:
        x, y = zoo.fashion_mnist("train")
        out["tune"] = ([x[30000 + i : 30500 + i] for i in range(0, 5000, 500)], y[30000:35000])
    if "heldout" in splits:
        out["heldout"] = eval_batches(model)
    return out


def _outputs(model, batches, optimize: bool) -> np.ndarray:
    """Logits, or for the sentence encoder its embeddings (masked mean over tokens)."""
    s = session(model, optimize=optimize)
    name = s.get_inputs()[0].name
    if isinstance(batches[0], dict):
        import _minilm

        return np.concatenate([_minilm.embed(s.run(None, x)[0], x["attention_mask"]) for x in batches])
    return np.concatenate([s.run(None, {name: x})[0] for x in batches])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="efficientnet_lite0", choices=tuple(DEFAULT_VARIANTS))
    ap.add_argument("--batch", type=int, default=32, help="calibration batch")
    ap.add_argument("--splits", default="tune,heldout")
    ap.add_argument("--variants")
    ap.add_argument("--targets", default="tensorrt,cpu")
    ap.add_argument("--fp32", help="the FP32 model (default: exported or found in benchmarks/_work)")
    args = ap.parse_args()
    print(f"# {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC")
    if args.model == "minilm":
        import _minilm

        src, calib, pre = _minilm.onnx_path(), str(_minilm.calib_dir()), None
    else:
        src = args.fp32 or fp32_path(args.model)
        calib, pre = calib_spec(args.model)
    fp32 = load_model(src)
    data = eval_data(args.model, args.splits.split(","))
    ref = {split: _outputs(src, b, True) for split, (b, _) in data.items()}
    rows = []
    for variant in (args.variants or DEFAULT_VARIANTS[args.model]).split(","):
        for target in args.targets.split(","):
            cfg = QuantizeConfig(calib=calib, preprocess=pre, batch=args.batch, target=target, progress=False, **options(variant))
            t0 = time.perf_counter()
            r = quantize(fp32, cfg)
            seconds = time.perf_counter() - t0
            row = {"variant": variant, "target": target, "quantize_seconds": round(seconds, 1),
                   "cle_seconds": r.report.get("cle", {}).get("seconds"), "cle_pairs": len(r.report.get("cle", {}).get("pairs", [])),
                   "bias_seconds": r.report.get("bias_correction", {}).get("seconds"),
                   "bias_layers": len(r.report.get("bias_correction", {}).get("layers", [])),
                   "sq_seconds": r.report.get("smoothquant", {}).get("seconds"),
                   "ada_seconds": r.report.get("adaround", {}).get("seconds"),
                   "ada_layers": sum("kept" not in x for x in r.report.get("adaround", {}).get("layers", [])),
                   "sq_activations": len(r.report.get("smoothquant", {}).get("activations", []))}
            for split, (batches, labels) in data.items():
                out = _outputs(r.model, batches, optimize=target == "cpu")
                row[f"top1_{split}"] = float(np.mean(out.argmax(1) == ref[split].argmax(1)))
                a, b = out.astype(np.float64), ref[split].astype(np.float64)
                row[f"cosine_{split}"] = float(np.mean((a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1) + 1e-12)))
                if labels is not None:
                    row[f"accuracy_{split}"] = float(np.mean(out.argmax(1) == labels))
                    row[f"fp32_accuracy_{split}"] = float(np.mean(ref[split].argmax(1) == labels))
                row[f"samples_{split}"] = len(out)
            rows.append(row)
            print(json.dumps(row), flush=True)
    splits = list(data)
    print("\n| technique | form | " + " | ".join(f"top-1 agreement / logits cosine, {s} ({len(ref[s])})" for s in splits) + " | quantize s | of which CLE / SmoothQuant / AdaRound / bias correction s |")
    print("|---|---|" + "---|" * len(splits) + "---|---|")
    for r in rows:
        tops = " | ".join(f"{100 * r[f'top1_{s}']:.2f}% / {r[f'cosine_{s}']:.5f}" + (f" (acc {100 * r[f'accuracy_{s}']:.2f}%, FP32 {100 * r[f'fp32_accuracy_{s}']:.2f}%)" if f"accuracy_{s}" in r else "") for s in splits)
        print(f"| {r['variant']} | {r['target']} | {tops} | {r['quantize_seconds']} | {r['cle_seconds'] or '-'} / {r['sq_seconds'] or '-'} / {r['ada_seconds'] or '-'} / {r['bias_seconds'] or '-'} |")


if __name__ == "__main__":
    main()
