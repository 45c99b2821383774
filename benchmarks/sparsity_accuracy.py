"""Accuracy of 2:4 pruning on real weights and real data.

Part ``effnet``: EfficientNet-Lite0 (pretrained) pruned one-shot, no fine-tune, with and without the
input-channel permutation; top-1 / top-5 agreement with the FP32 model on the real photos of
``trtcompress.zoo`` (12 crops and flips each), all run in ONNX Runtime. Besides the default (every
layer TensorRT can run sparse), a variant prunes only layers with >= 256 input and output channels,
where TensorRT's sparse kernels are expected to pay off.

Part ``fashion``: the Fashion-MNIST CNN trained here, pruned 2:4 in torch (masks held fixed) and
distilled from the dense model with ``trtcompress.finetune``; test accuracy of dense, pruned
one-shot and pruned + distilled, and a check that the exported ONNX follows 2:4.

Run:  .venv/bin/python benchmarks/sparsity_accuracy.py [--part effnet|fashion|all] [--out DIR]
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def _photo_samples() -> np.ndarray:
    """All catalogue photos (both splits: one-shot pruning uses no calibration data), 12 views each,
    EfficientNet-Lite preprocessing."""
    from trtcompress import zoo

    return np.concatenate([b for split in ("eval", "calib") for b in zoo.photo_batch(split, "efficientnet-lite", batch_size=64)])


def _logits(model, x: np.ndarray, batch: int = 32) -> np.ndarray:
    import onnxruntime as ort

    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    name = sess.get_inputs()[0].name
    return np.concatenate([sess.run(None, {name: x[i : i + batch]})[0] for i in range(0, len(x), batch)])


def _agreement(ref: np.ndarray, out: np.ndarray) -> dict[str, float]:
    top1 = ref.argmax(1)
    top5 = np.argsort(-out, axis=1)[:, :5]
    return {
        "top1_agreement": float((out.argmax(1) == top1).mean()),
        "top5_contains_fp32_top1": float((top5 == top1[:, None]).any(1).mean()),
    }


def part_effnet(out_dir: Path) -> dict:
    from trtcompress import zoo
    from trtcompress.torch_export import ExportConfig, export_module
    from trtcompress.model_io import load_model
    from trtcompress.sparsity.prune import PruneOptions, sparsify_onnx

    onnx_path = out_dir / "effnet_lite0.onnx"
    export_module(zoo.efficientnet_lite0(), onnx_path, ExportConfig(inputs=("x:1x3x224x224",)))
    dense = load_model(onnx_path)
    x = _photo_samples()
    ref = _logits(dense, x)
    result = {"photos": len(zoo.photos()), "samples": int(len(x))}
    variants = {
        "all_eligible": PruneOptions(),
        "all_eligible_permuted": PruneOptions(permute=True),
        "min_channels_256": PruneOptions(min_channels=256),
        "min_channels_256_permuted": PruneOptions(min_channels=256, permute=True),
    }
    for label, opts in variants.items():
        t0 = time.perf_counter()
        pruned, rep = sparsify_onnx(dense, opts)
        seconds = time.perf_counter() - t0
        out = _logits(pruned, x)
        key = "_permuted" if opts.permute else ""
        result[label] = {
            **_agreement(ref, out),
            "seconds_sparsify": round(seconds, 2),
            "layers_pruned": rep["layers_pruned"],
            "layers_dense": rep["layers_dense"],
            "layers_permuted": rep["layers_permuted"],
            "pruning_rate": round(rep["pruning_rate"], 4),
            "mean_retained_magnitude": round(rep["mean_retained_magnitude" + key], 4),
            "weighted_retained_magnitude": round(rep["weighted_retained_magnitude" + key], 4),
        }
    # the permutation alone changes nothing: same logits up to float rounding
    permuted_only, _ = sparsify_onnx(dense, PruneOptions(permute=True), apply_masks=False)
    result["permutation_only_max_abs_diff"] = float(np.abs(_logits(permuted_only, x[:32]) - ref[:32]).max())
    return result


def part_fashion(out_dir: Path) -> dict:
    """Fashion-MNIST CNN: dense vs pruned one-shot vs pruned + distilled (masks held fixed)."""
    import copy

    import torch

    from trtcompress import zoo
    from trtcompress.torch_export import ExportConfig, export_module
    from trtcompress.finetune import FinetuneConfig, evaluate, finetune, open_training_data
    from trtcompress.model_io import load_model
    from trtcompress.sparsity.inspect import inspect_layers
    from trtcompress.sparsity.torch_masks import apply_2to4

    torch.manual_seed(0)
    teacher = zoo.fashion_cnn().eval()
    train = open_training_data("fashion-mnist:train", batch_size=128)
    test = open_training_data("fashion-mnist:test", batch_size=512, shuffle=False)
    dense_acc = evaluate(teacher, test)
    student = copy.deepcopy(teacher)
    masks = apply_2to4(student)
    one_shot_acc = evaluate(student.eval(), test)
    config = FinetuneConfig(
        alpha=0.5, temperature=4.0, steps=FASHION_STEPS, lr=1e-3, optimizer="adam", schedule="cosine", progress=False, seed=0,
        checkpoint_dir=str(out_dir / "fashion_ckpt"), checkpoint_every=200,
    )
    t0 = time.perf_counter()
    res = finetune(student, teacher, train, config)
    seconds = time.perf_counter() - t0
    distilled_acc = evaluate(res.student.eval(), test)
    assert masks.check() == [], "masks did not hold through fine-tuning"
    onnx_path = out_dir / "fashion_cnn_2to4.onnx"
    export_module(res.student.eval(), onnx_path, ExportConfig(inputs=("x:1x1x28x28",)))
    layers = [l for l in inspect_layers(load_model(onnx_path)) if l.shape is not None]
    return {
        "dense_accuracy": dense_acc,
        "pruned_one_shot_accuracy": one_shot_acc,
        "pruned_distilled_accuracy": distilled_acc,
        "drop_points": round(100 * (dense_acc - distilled_acc), 2),
        "within_half_point": bool(dense_acc - distilled_acc <= 0.005),
        "finetune": {**config.to_dict(), "seconds": round(seconds, 1)},
        "masks": {k: v for k, v in masks.report().items() if k != "layers"},
        "onnx_layers_2to4": [l.layer for l in layers if l.follows_2to4],
        "onnx_layers_dense": [l.layer for l in layers if not l.follows_2to4],
    }


FASHION_STEPS = 400  # batches of 128: about 0.85 epoch (2 shared CPU cores)
PARTS = {"effnet": part_effnet, "fashion": part_fashion}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--part", choices=[*PARTS, "all"], default="all")
    p.add_argument("--out", default="benchmarks/_work/sparsity", help="working directory (models, JSON)")
    args = p.parse_args(argv)
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    results = {"date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"), "command": " ".join(["python", *sys.argv])}
    for name in PARTS if args.part == "all" else [args.part]:
        t0 = time.perf_counter()
        results[name] = PARTS[name](out_dir)
        results[name]["seconds"] = round(time.perf_counter() - t0, 1)
        print(json.dumps({name: results[name]}, indent=2), flush=True)
    (out_dir / f"sparsity_accuracy_{args.part}.json").write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
