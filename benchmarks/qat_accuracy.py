"""PTQ against PTQ + quantization-aware training (``quantize --qat``) on pretrained EfficientNet-Lite0,
TensorRT form, with only the offline photos.

    .venv/bin/python benchmarks/qat_accuracy.py [--steps 60] [--lr 1e-5] [--batch 16] [--learn-scales/--no-learn-scales]
        [--ptq ada+bias] [--qat-data photos:calib,photos:tune,stamps] [--split tune|heldout]

The FP32 export is normalised as ``compress`` does, then quantized twice with the same settings
(entropy calibration on the ``calib`` photos' views, with the ``--ptq`` techniques): PTQ alone, and
PTQ + QAT trained label-free on ``--qat-data`` (random crops and flips again). Nothing trains on or
is chosen on ``heldout``: the top-1 agreement with FP32 is measured there (552 views), with ONNX
Runtime at the ``basic`` optimisation level (the default level's int8 fusions saturate on CPUs
without VNNI). Times are the whole ``quantize`` calls and QAT's training alone. Writes
``benchmarks/_work/qat_accuracy-<steps>-<lr>-<batch>.json``.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _int8_models import WORK, fp32_path  # noqa: E402

from trtcompress.data.base import model_inputs  # noqa: E402
from trtcompress.data.options import DataOptions, open_data  # noqa: E402
from trtcompress.model_io import load_model  # noqa: E402
from trtcompress.sessions import SessionConfig, open_session  # noqa: E402
from trtcompress.stages.normalize import NormalizeConfig, normalize  # noqa: E402
from trtcompress.stages.quantize import QuantizeConfig, quantize  # noqa: E402


def agreement(models: dict, reference, split: str) -> dict:
    """Top-1 agreement of each model with ``reference`` on ``split``'s photos and their views."""
    config = SessionConfig(optimization="basic")
    ref = open_session(reference.SerializeToString(), config)
    sessions = {k: open_session(m.SerializeToString(), config) for k, m in models.items()}
    same = {k: 0 for k in models}
    n = 0
    for feed in open_data(f"photos:{split}", model_inputs(reference), DataOptions(batch=24)):
        t = ref.run(None, feed)[0].argmax(-1)
        for k, s in sessions.items():
            same[k] += int((s.run(None, feed)[0].argmax(-1) == t).sum())
        n += len(t)
    return {"samples": n, **{k: v / n for k, v in same.items()}}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=60)
    ap.add_argument("--lr", type=float, default=QuantizeConfig.qat_lr)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--learn-scales", action=argparse.BooleanOptionalAction, default=True)
    ap.add_argument("--split", default="heldout", help="photos split measured on (tune only to choose settings)")
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--qat-data", default="photos:calib,photos:tune", help="unlabelled training data specs (e.g. add 'stamps')")
    ap.add_argument("--ptq", default="", help="post-training techniques before QAT, in both rows: '' or ada+bias")
    args = ap.parse_args()

    model = normalize(load_model(fp32_path("efficientnet_lite0")), NormalizeConfig()).model
    techniques = {"ada": {"adaround": True}, "bias": {"bias_correction": True}}
    ptq_options = {k: v for t in filter(None, args.ptq.split("+")) for k, v in techniques[t].items()}
    base = QuantizeConfig(calib="photos:calib", batch=32, progress=False, threads=args.threads, **ptq_options)
    t0 = time.perf_counter()
    ptq = quantize(model, base)
    ptq_seconds = time.perf_counter() - t0
    qat_config = base.replace(qat=True, qat_data=tuple(args.qat_data.split(",")), qat_steps=args.steps, qat_lr=args.lr, qat_batch=args.batch,
                              qat_learn_scales=args.learn_scales, qat_checkpoint=str(WORK / "qat-checkpoints"))
    t0 = time.perf_counter()
    qat = quantize(model, qat_config)
    qat_seconds = time.perf_counter() - t0
    scores = agreement({"ptq": ptq.model, "ptq+qat": qat.model}, model, args.split)
    report = qat.report["qat"]
    out = {
        "model": "efficientnet_lite0 (normalised dynamo export)", "form": "tensorrt", "split": args.split, "ptq": args.ptq, "qat_data": args.qat_data, "scores": scores,
        "ptq_quantize_seconds": round(ptq_seconds, 1), "qat_quantize_seconds": round(qat_seconds, 1), "qat_training_seconds": report["seconds"],
        "qat": {k: v for k, v in report.items() if k != "loss_curve"}, "loss_curve": report["loss_curve"],
        "date": time.strftime("%Y-%m-%d"),
    }
    WORK.mkdir(parents=True, exist_ok=True)
    path = WORK / f"qat_accuracy-{args.steps}-{args.lr:g}-{args.batch}{'' if args.learn_scales else '-fixed'}{'-' + args.ptq if args.ptq else ''}{'-stamps' if 'stamps' in args.qat_data else ''}-{args.split}.json"
    path.write_text(json.dumps(out, indent=2, default=float))
    print(json.dumps({k: out[k] for k in ("scores", "ptq_quantize_seconds", "qat_quantize_seconds", "qat_training_seconds")}, default=float))
    print(f"loss {report['loss_curve'][0]} -> {report['loss_curve'][-1]}; scales moved median {report['scale_change_median']:.3f}, max {report['scale_change_max']:.3f}; wrote {path}")


if __name__ == "__main__":
    np.set_printoptions(precision=4)
    main()
