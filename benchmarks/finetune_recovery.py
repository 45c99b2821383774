"""Recovery by the ``finetune`` stage on pretrained EfficientNet-Lite0 with only the offline photos.

    .venv/bin/python benchmarks/finetune_recovery.py --part sparse    # normalize, sparsify (2:4), finetune
    .venv/bin/python benchmarks/finetune_recovery.py --part lowrank   # normalize, lowrank at 0.7x FLOPs, finetune

The stages run as ``compress`` runs them (the same stage functions, the finetune stage given the
torch model, the job's photo reader and preprocessing). Training is label-free (alpha 0): the
``calib`` and ``tune`` photos (each with its 12 deterministic views), randomly cropped and flipped
again; nothing is tuned on or trained on ``heldout``. Measured with ONNX Runtime (CPU, 1 thread)
on the ``heldout`` photos and their views: top-1 agreement of the ONNX model after the structural
stage (one-shot) and after finetune with the FP32 export. The fine-tuning time is the stage's
(BatchNorm re-estimation and training; not the export). Writes
``benchmarks/_work/finetune_recovery-<part>-<steps>steps.json``.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from trtcompress.contracts import measure
from trtcompress.data.base import model_inputs
from trtcompress.data.options import DataOptions, open_data
from trtcompress.lowrank import LowRankConfig, factorize_onnx
from trtcompress.model_io import load_model
from trtcompress.stages.finetune import FinetuneStageConfig, finetune
from trtcompress.stages.normalize import NormalizeConfig, normalize
from trtcompress.stages.sparsify import SparsifyConfig, sparsify
from trtcompress.torch_export import ExportConfig, export

WORK = Path(__file__).parent / "_work"
MODEL = "trtcompress.zoo:efficientnet_lite0"
INPUT = "x:1x3x224x224"
PRE = "efficientnet-lite"
FLOP_TARGET = 0.7  # whole-model FLOPs after low-rank, as a share of the dense model's


def _session(model):
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    return ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"])


def top1(models: dict, reference) -> dict:
    """Top-1 agreement of each model with ``reference`` on the heldout photos and their views."""
    ref = _session(reference)
    sessions = {k: _session(m) for k, m in models.items()}
    same = {k: 0 for k in models}
    n = 0
    for feed in open_data("photos:heldout", model_inputs(reference), DataOptions(batch=24, preprocess=PRE)):
        t = ref.run(None, feed)[0].argmax(-1)
        for k, s in sessions.items():
            same[k] += int((s.run(None, feed)[0].argmax(-1) == t).sum())
        n += len(t)
    return {"samples": n, **{k: v / n for k, v in same.items()}}


def lowrank_at(model, target: float):
    """The energy-per-FLOP allocation whose whole model costs ``target`` of the dense FLOPs (bisection on flop_fraction)."""
    lo, hi, best = 0.05, 0.95, None
    for _ in range(5):
        mid = (lo + hi) / 2
        res = factorize_onnx(model, LowRankConfig(rule="flops", flop_fraction=mid, svd="exact"))
        ratio = res.report["flops_after"] / res.report["flops_before"]
        if best is None or abs(ratio - target) < abs(best[1] - target):
            best = (res, ratio, mid)
        lo, hi = (mid, hi) if ratio < target else (lo, mid)
    return best


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--part", choices=("sparse", "lowrank"), required=True)
    ap.add_argument("--steps", type=int, default=60)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--lr", type=float, default=1e-4)
    ap.add_argument("--norm-samples", type=int, default=256)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    import torch

    torch.set_num_threads(args.threads)
    WORK.mkdir(exist_ok=True)
    dense_path = WORK / "finetune_recovery-dense.onnx"
    if not dense_path.is_file():
        export(MODEL, dense_path, ExportConfig(inputs=(INPUT,)))
    dense = normalize(load_model(dense_path), NormalizeConfig()).model
    out: dict = {"part": args.part, "model": MODEL, "train": ["photos:calib", "photos:tune"], "measured_on": "photos:heldout"}
    if args.part == "sparse":
        one_shot = sparsify(dense, SparsifyConfig()).model
        out["structure"] = {"layers_2to4": measure(one_shot, ["2:4"])["2:4"]}
    else:
        res, ratio, fraction = lowrank_at(dense, FLOP_TARGET)
        one_shot = res.model
        out["structure"] = {"flop_fraction": fraction, "model_flop_ratio": ratio, "factorised": res.report["factorised"]}
    config = FinetuneStageConfig(
        torch_model=MODEL, train=("photos:calib", "photos:tune"), preprocess=PRE, inputs=(INPUT,), steps=args.steps,
        batch_size=args.batch_size, lr=args.lr, norm_samples=args.norm_samples, threads=args.threads, progress=False, history_every=5,
    )
    out["config"] = config.to_dict()
    t0 = time.perf_counter()
    result = finetune(one_shot, config)
    out["stage_seconds"] = round(time.perf_counter() - t0, 1)
    rep = result.report
    out["finetune_seconds"] = rep["seconds"]
    out["loss_curve"] = rep["loss_curve"]
    if args.part == "sparse":
        out["structure"]["layers_2to4_after"] = measure(result.model, ["2:4"])["2:4"]
    out["top1_agreement"] = top1({"one_shot": one_shot, "finetuned": result.model}, dense)
    path = WORK / f"finetune_recovery-{args.part}-{args.steps}steps.json"
    path.write_text(json.dumps(out, indent=1))
    print(json.dumps({k: v for k, v in out.items() if k not in ("config", "loss_curve")}, indent=1))
    print("loss", out["loss_curve"][0], "->", out["loss_curve"][-1])


if __name__ == "__main__":
    main()
