"""Weight sharing (issue 17, first part): shipped size and accuracy, no centroid fine-tuning.

    .venv/bin/python benchmarks/share.py --part fashion        # Fashion CNN: pruned + shared + packed
    .venv/bin/python benchmarks/share.py --part efficientnet EFF.onnx   # 4 and 5 bits + packed
    .venv/bin/python benchmarks/share.py --part kmeans [EFF.onnx]       # k-means time per million weights
    .venv/bin/python benchmarks/share.py --part peers [EFF.onnx]        # TF-MOT's one-shot clustering beside ours
    .venv/bin/python benchmarks/share.py --part int8grid [EFF.onnx]     # shared levels on the INT8 grid + quantize, packed
    .venv/bin/python benchmarks/share.py --part alloc EFF.onnx --int8-grid --alloc layer:4.0,model:4.0 --split tune   # bits by layer or model error

Fashion: the pruning fraction and bits are chosen on a validation split (the last 5 000 training
images; the model saw them in training, so they only rank settings against FP32 on the same images),
as the smallest packed artifact whose validation accuracy is within 0.5 points of FP32 (else the
most accurate);
only the chosen setting (and the 2:4 variant, fixed in advance) is measured on the 10 000 test
images. EfficientNet-Lite0: bits fixed in advance (5 and 4, per layer and per channel), top-1
agreement with FP32 on every view of the ``heldout`` photos; the stage's time includes packing. Sizes are bytes of the serialised
ONNX and of the ``trtcompress pack`` artifact; ratios are against the FP32 ONNX file.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import onnx

from trtcompress.sessions import SessionConfig, open_session
from trtcompress.share import ShareConfig, kmeans_1d, kmeans_rows
from trtcompress.share.onnx_share import share_onnx
from trtcompress.share.pack import pack_bytes, unpack_bytes
from trtcompress.stages.share import share
from trtcompress.stages.sparsify import SparsifyConfig, sparsify

WORK = Path(__file__).parent / "_work"


def _logits(model: onnx.ModelProto, feeds) -> np.ndarray:
    # "basic": the exact Q/DQ arithmetic TensorRT runs (extended fusions saturate without VNNI;
    # see comparison.exact_qdq_options); float models compute the same either way
    sess = open_session(model, SessionConfig(threads=2, optimization="basic"))
    name = sess.get_inputs()[0].name
    return np.concatenate([sess.run(None, {name: x})[0] for x in feeds])


def _packed(model: onnx.ModelProto) -> int:
    data = model.SerializeToString()
    art, _ = pack_bytes(data)
    assert unpack_bytes(art) == data
    return len(art)


def _fashion_data():
    """The Fashion CNN's FP32 ONNX and its size; train, validation (the last 5000 training images)
    and test splits; and accuracy(model, x, y) in batches of 1000."""
    from trtcompress.zoo.fashion_mnist import fashion_mnist
    from trtcompress.zoo.models import onnx_path

    fp32_path = onnx_path("fashion_cnn")
    fp32, fp32_bytes = onnx.load(fp32_path), fp32_path.stat().st_size
    xtr, ytr = fashion_mnist("train")
    xv, yv = xtr[-5000:], ytr[-5000:]
    xt, yt = fashion_mnist("test")
    batches = lambda x: [x[i:i + 1000] for i in range(0, len(x), 1000)]
    acc = lambda m, x, y: float(np.mean(_logits(m, batches(x)).argmax(1) == y))
    return fp32, fp32_bytes, xtr, ytr, xv, yv, xt, yt, acc


def fashion(grid) -> dict:

    fp32, fp32_bytes, xtr, ytr, xv, yv, xt, yt, acc = _fashion_data()
    ref_val, ref_test = acc(fp32, xv, yv), acc(fp32, xt, yt)
    print({"fp32_val": ref_val, "fp32_test": ref_test}, flush=True)
    rows = []
    for prune, bits in grid:
            t = time.perf_counter()
            r = share(fp32, ShareConfig(bits=bits, prune=prune, min_size=256))
            m = r.model
            rows.append({"prune": prune, "bits": bits, "val_acc": acc(m, xv, yv), "packed": r.report["sizes"]["packed_bytes"],
                         "onnx": m.ByteSize(), "seconds": time.perf_counter() - t, "model": m})
            print({k: v for k, v in rows[-1].items() if k != "model"}, flush=True)
    ok = [r for r in rows if r["val_acc"] >= ref_val - 0.005]
    chosen = min(ok, key=lambda r: r["packed"]) if ok else max(rows, key=lambda r: r["val_acc"])
    out = {"fp32_bytes": fp32_bytes, "fp32_val": ref_val, "fp32_test": ref_test,
           "sweep": [{k: v for k, v in r.items() if k != "model"} for r in rows],
           "chosen": {"prune": chosen["prune"], "bits": chosen["bits"], "packed": chosen["packed"], "onnx": chosen["onnx"],
                      "ratio": fp32_bytes / chosen["packed"], "test_acc": acc(chosen["model"], xt, yt)}}
    most = min(rows, key=lambda r: r["packed"])  # the smallest tried, whatever its accuracy: what fine-tuning would have to recover
    out["smallest"] = {"prune": most["prune"], "bits": most["bits"], "ratio": fp32_bytes / most["packed"], "test_acc": acc(most["model"], xt, yt)}
    s24 = sparsify(fp32, SparsifyConfig()).model
    m24 = share(s24, ShareConfig(bits=4, min_size=256)).model
    out["2:4+4bit"] = {"packed": _packed(m24), "onnx": m24.ByteSize(), "ratio": fp32_bytes / _packed(m24),
                       "test_acc": acc(m24, xt, yt), "test_acc_2:4_only": acc(s24, xt, yt)}
    return out


def efficientnet(path: str, configs) -> dict:
    from trtcompress.data import model_inputs, open_source
    from trtcompress.data.readers import ReaderOptions

    fp32, fp32_bytes = onnx.load(path), Path(path).stat().st_size
    feeds = [f["x"] for f in open_source("photos:heldout", model_inputs(fp32), ReaderOptions(batch_size=12))]
    ref = _logits(fp32, feeds).argmax(1)
    out = {"fp32_bytes": fp32_bytes, "samples": int(ref.size), "runs": []}
    for granularity, bits in configs:
            t = time.perf_counter()
            r = share(fp32, ShareConfig(bits=bits, granularity=granularity))
            secs = time.perf_counter() - t
            packed = r.report["sizes"]["packed_bytes"]  # the stage packs once (round trip covered by tests)
            top1 = float(np.mean(_logits(r.model, feeds).argmax(1) == ref))
            out["runs"].append({"granularity": granularity, "bits": bits, "layers": r.report["layers_shared"],
                                "weights": r.report["weights_shared"], "mean_rel_error": r.report["mean_rel_error"],
                                "onnx": r.model.ByteSize(), "packed": packed, "ratio": fp32_bytes / packed,
                                "top1_agreement": top1, "stage_seconds": secs})
            print(out["runs"][-1], flush=True)
    return out


def kmeans_time(path: str | None) -> dict:
    """Seconds per million weights, each init timed in the same rounds (interleaved)."""
    from trtcompress.zoo.models import onnx_path

    src = onnx.load(path) if path else onnx.load(onnx_path("fashion_cnn"))
    weights = [onnx.numpy_helper.to_array(t) for t in src.graph.initializer if len(t.dims) >= 2 and np.prod(t.dims) >= 1024]
    n = sum(w.size for w in weights)
    times: dict[str, list[float]] = {}
    # kmeans++ per channel loops over rows in Python: left out of the timing
    variants = (("linear", "layer"), ("density", "layer"), ("kmeans++", "layer"), ("linear", "channel"), ("density", "channel"))
    for _ in range(2):
        for init, gran in variants:
            t = time.perf_counter()
            for w in weights:
                if gran == "layer":
                    kmeans_1d(w, 16, init)
                else:
                    kmeans_rows(w.reshape(w.shape[0], -1), 16, init)
            times.setdefault(f"{init}/{gran}", []).append(time.perf_counter() - t)
    return {"weights": int(n), "layers": len(weights),
            "s_per_million": {k: float(np.median(v)) / n * 1e6 for k, v in times.items()}}


# TF-MOT's clustering (tensorflow_model_optimization clustering_centroids.py) initialises centroids
# (linear: linspace(min, max, k); kmeans++) and then trains them by gradient during fine-tuning; with
# no fine-tuning the weights are pulled to the nearest initial centroid: iters=0 here. Per tensor, 16.
PEERS = {
    "tfmot linear 16 (one-shot)": ShareConfig(clusters=16, init="linear", iters=0),
    "tfmot kmeans++ 16 (one-shot)": ShareConfig(clusters=16, init="kmeans++", iters=0),
    "ours k-means linear 16": ShareConfig(clusters=16, init="linear"),
    "ours size rule 4.0 bits/weight": ShareConfig(rule="size", mean_bits=4.0),
}


def peers(path: str | None) -> dict:
    """Top-1 of each clustering against FP32 on held-out data: the Fashion CNN on its 10 000 test
    images (accuracy), EfficientNet-Lite0 on the heldout photos (agreement with FP32). The size
    rule measures layer outputs on calibration data: Fashion training images, the calib photos."""
    from trtcompress.data import model_inputs, open_source
    from trtcompress.data.readers import ReaderOptions
    from trtcompress.zoo.fashion_mnist import fashion_mnist
    from trtcompress.zoo.models import onnx_path

    out = {}
    xt, yt = fashion_mnist("test")
    xc, _ = fashion_mnist("train", limit=64)
    models = {"fashion_cnn": (onnx.load(onnx_path("fashion_cnn")), [xt[i:i + 1000] for i in range(0, len(xt), 1000)], yt,
                              [{"x": xc[:32]}, {"x": xc[32:]}], 256)}
    if path:
        eff = onnx.load(path)
        opts = ReaderOptions(batch_size=12)
        held = [f["x"] for f in open_source("photos:heldout", model_inputs(eff), opts)]
        calib = list(open_source("photos:calib", model_inputs(eff), ReaderOptions(batch_size=8, limit=32)))
        models["efficientnet_lite0"] = (eff, held, None, calib, 1024)
    for name, (fp32, feeds, labels, calib, min_size) in models.items():
        ref = _logits(fp32, feeds).argmax(1)
        rows = {"fp32_top1": float(np.mean(ref == labels)) if labels is not None else 1.0}
        for what, cfg in PEERS.items():
            t = time.perf_counter()
            shared, report = share_onnx(fp32, cfg.replace(min_size=min_size), calibration=calib if cfg.rule != "bits" else None)
            secs = time.perf_counter() - t
            pred = _logits(shared, feeds).argmax(1)
            rows[what] = {"top1": float(np.mean(pred == (labels if labels is not None else ref))), "mean_bits": report["mean_bits"],
                          "mean_rel_error": report["mean_rel_error"], "packed": _packed(shared), "seconds": secs}
            print(name, what, rows[what], flush=True)
        out[name] = rows
    return out


def int8grid(path: str | None, bits_list=(4, 5), mean_bits=(4.0, 4.5)) -> dict:
    """share --int8-grid then quantize (TensorRT form, int8-stored weights), packed: what a fleet
    downloads, against the FP32 ONNX file and against INT8 alone packed the same way; top-1 against
    FP32 on held-out data (Fashion test images; EfficientNet heldout photos), calibration on
    training images / the calib photos."""
    import tempfile

    from trtcompress.data import model_inputs, open_source
    from trtcompress.data.readers import ReaderOptions
    from trtcompress.pipeline import Pipeline
    from trtcompress.stages.normalize import NormalizeConfig
    from trtcompress.stages.quantize import QuantizeConfig
    from trtcompress.zoo.fashion_mnist import fashion_mnist
    from trtcompress.zoo.models import onnx_path

    tmp = Path(tempfile.mkdtemp())
    xt, yt = fashion_mnist("test")
    xc, _ = fashion_mnist("train", limit=64)
    np.savez(tmp / "fashion_calib.npz", x=xc)
    models = {"fashion_cnn": (str(onnx_path("fashion_cnn")), [xt[i:i + 1000] for i in range(0, len(xt), 1000)], yt, str(tmp / "fashion_calib.npz"), None, 256)}
    if path:
        eff = onnx.load(path)
        held = [f["x"] for f in open_source("photos:heldout", model_inputs(eff), ReaderOptions(batch_size=12))]
        models["efficientnet_lite0"] = (path, held, None, "photos:calib", "efficientnet-lite", 1024)
    out = {}
    for name, (file, feeds, labels, calib, pre, min_size) in models.items():
        fp32, fp32_bytes = onnx.load(file), Path(file).stat().st_size
        ref = _logits(fp32, feeds).argmax(1)
        truth = labels if labels is not None else ref
        q = QuantizeConfig(calib=calib, preprocess=pre, limit=32, weights="int8")
        rows = {"fp32_bytes": fp32_bytes, "fp32_top1": float(np.mean(ref == truth))}
        norm = NormalizeConfig()  # as compress and the stage verbs run first (BatchNorm folded into the weights)
        variants = {"int8 alone": [norm, q]}
        for bits in bits_list:
            variants[f"int8 grid {bits} bits + int8"] = [norm, ShareConfig(bits=bits, int8_grid=True, min_size=min_size), q]
        for mean in mean_bits:  # bits per layer from a size budget, layer outputs measured on the calibration data
            variants[f"int8 grid size rule {mean} bits/weight + int8"] = [
                norm, ShareConfig(rule="size", mean_bits=mean, int8_grid=True, min_size=min_size, calib=calib, preprocess=pre, limit=32), q]
        for what, stages in variants.items():
            t = time.perf_counter()
            model = Pipeline(stages).run(fp32).model
            secs = time.perf_counter() - t
            packed = _packed(model)
            rows[what] = {"top1": float(np.mean(_logits(model, feeds).argmax(1) == truth)), "onnx": model.ByteSize(),
                          "packed": packed, "ratio_packed": fp32_bytes / packed, "seconds": secs}
            print(name, what, rows[what], flush=True)
        out[name] = rows
    return out


# -- trained centroids (issue 17 items 2 and 5) ---------------------------------------------------

PRUNED = WORK / "fashion_cnn_pruned.pt"


def pruned_fashion_cnn():
    """The Fashion CNN with the weights ``--part trained-fashion`` pruned and retrained (its torch model for ``finetune``)."""
    import torch

    from trtcompress.zoo import fashion_cnn

    model = fashion_cnn()
    model.load_state_dict(torch.load(PRUNED, map_location="cpu", weights_only=True))
    return model.eval()


def _sparsity(spec: str, name: str) -> float:
    """``PATTERN=FRACTION,...`` (first glob match on the module name wins; ``*`` for the rest)."""
    import fnmatch

    for entry in spec.split(","):
        pattern, _, frac = entry.partition("=")
        if fnmatch.fnmatch(name, pattern):
            return float(frac)
    return 0.0


def _prune_retrain(spec: str, rounds: int, steps: int, lr: float) -> dict:
    """Deep Compression's first step on the torch model: per-layer magnitude pruning to the fractions
    of ``spec``, reached in ``rounds`` equal steps, each followed by ``steps`` of retraining with the
    pruned weights held at zero (distillation from the dense model plus the real labels, alpha 0.5),
    on the first 55 000 training images (the last 5 000 are the validation split)."""
    import copy

    import torch

    from trtcompress.finetune import FinetuneConfig, finetune, open_training_data
    from trtcompress.zoo import fashion_cnn

    teacher = fashion_cnn()
    student = copy.deepcopy(teacher)
    layers = {n: m for n, m in student.named_modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear))}
    masks: dict[str, torch.Tensor] = {}
    hooks = []
    data = open_training_data("fashion-mnist:train:55000", 128)
    log = []
    for r in range(1, rounds + 1):
        for h in hooks:
            h.remove()
        hooks = []
        with torch.no_grad():
            for n, m in layers.items():
                frac = _sparsity(spec, n) * r / rounds
                w = m.weight
                cut = torch.quantile(w.abs().flatten().double(), frac).float() if frac > 0 else torch.tensor(-1.0)
                masks[n] = (w.abs() > cut) & masks.get(n, torch.ones_like(w, dtype=torch.bool))
                w.mul_(masks[n])
                hooks.append(w.register_hook(lambda g, k=masks[n]: g * k))
        t = time.perf_counter()
        finetune(student, teacher, data, FinetuneConfig(alpha=0.5, temperature=2.0, steps=steps, lr=lr, schedule="cosine",
                                                        batch_size=128, seed=r, progress=False))
        with torch.no_grad():  # Adam leaves a masked weight where it was (zero gradient, zero moments)
            assert all(bool((m.weight[~masks[n]] == 0).all()) for n, m in layers.items())
        log.append({"round": r, "seconds": time.perf_counter() - t})
        print(log[-1], flush=True)
    for h in hooks:
        h.remove()
    WORK.mkdir(exist_ok=True)
    torch.save(student.state_dict(), PRUNED)
    return {"rounds": log, "sparsity": {n: float((~masks[n]).float().mean()) for n in layers},
            "total_sparsity": float(sum(int((~k).sum()) for k in masks.values()) / sum(k.numel() for k in masks.values()))}


def trained_fashion(a) -> dict:
    """Pruned (+ retrained) -> normalize -> share -> finetune (trained centroids, labelled) -> pack; test accuracy."""
    import tempfile

    from trtcompress.stages.finetune import FinetuneStageConfig, finetune
    from trtcompress.stages.normalize import NormalizeConfig, normalize
    from trtcompress.torch_export import ExportConfig, export_module

    fp32, fp32_bytes, xtr, ytr, xv, yv, xt, yt, acc = _fashion_data()
    out = {"fp32_bytes": fp32_bytes, "fp32_val": acc(fp32, xv, yv), "fp32_test": acc(fp32, xt, yt), "sparsity_spec": a.sparsity}
    print(out, flush=True)
    t = time.perf_counter()
    if not (a.reuse_pruned and PRUNED.is_file()):
        out["prune"] = _prune_retrain(a.sparsity, a.rounds, a.prune_steps, a.prune_lr)
    out["prune_seconds"] = time.perf_counter() - t
    with tempfile.TemporaryDirectory() as tmp:
        export_module(pruned_fashion_cnn(), Path(tmp) / "p.onnx", ExportConfig(inputs=("x:1x1x28x28",), exporter="torchscript"))
        pruned = normalize(onnx.load(Path(tmp) / "p.onnx"), NormalizeConfig()).model
    out["pruned"] = {"val": acc(pruned, xv, yv), "packed": _packed(pruned), "ratio": fp32_bytes / _packed(pruned)}
    print("pruned", out["pruned"], flush=True)
    rows = []
    for bits in (int(b) for b in a.bits.split(",")):
        cfg = ShareConfig(bits=bits, min_size=256, int8_grid=a.int8_grid)
        shared = share(pruned, cfg).model
        row = {"bits": bits, "int8_grid": a.int8_grid, "shared_val": acc(shared, xv, yv), "shared_packed": _packed(shared)}
        t = time.perf_counter()
        ft = finetune(shared, FinetuneStageConfig(
            torch_model=f"{Path(__file__).resolve()}:pruned_fashion_cnn", train=("fashion-mnist:train:55000",), steps=a.steps,
            batch_size=128, lr=a.lr, augment=False, inputs=("x:1x1x28x28",), exporter="torchscript", progress=False,
            centroids_only=a.centroids_only))
        row.update({"finetune_seconds": time.perf_counter() - t, "val": acc(ft.model, xv, yv), "packed": _packed(ft.model),
                    "onnx": ft.model.ByteSize(), "snap_shift": ft.report["structure"]["centroids"].get("snap_shift"),
                    "export_rel_error": max(l["rel_error"] for l in ft.report["structure"]["centroids"]["written"])})
        row["ratio"] = fp32_bytes / row["packed"]
        row["_model"] = ft.model
        rows.append(row)
        print({k: v for k, v in row.items() if k != "_model"}, flush=True)
    ok = [r for r in rows if r["val"] >= out["fp32_val"] - 0.005]
    chosen = min(ok, key=lambda r: r["packed"]) if ok else max(rows, key=lambda r: r["val"])
    chosen["test"] = acc(chosen["_model"], xt, yt)  # the only test-split measurement
    out["runs"] = [{k: v for k, v in r.items() if k != "_model"} for r in rows]
    out["chosen"] = {k: v for k, v in chosen.items() if k != "_model"}
    print("chosen", out["chosen"], flush=True)
    return out


EFF_SHARED = WORK / "efficientnet_lite0-shared-{tag}.onnx"


def trained_efficientnet(a) -> dict:
    """EfficientNet-Lite0: normalize -> share (INT8 grid, size rule, per-layer levels) -> finetune
    (trained levels, label-free distillation on the calib + tune photos) -> pack; top-1 agreement
    with FP32 on the heldout photos, which nothing here trains or chooses on."""
    from trtcompress.data import model_inputs, open_source
    from trtcompress.data.readers import ReaderOptions
    from trtcompress.stages.finetune import FinetuneStageConfig, finetune
    from trtcompress.stages.normalize import NormalizeConfig, normalize

    fp32, fp32_bytes = onnx.load(a.model), Path(a.model).stat().st_size
    feeds = [f["x"] for f in open_source(f"photos:{a.split}", model_inputs(fp32), ReaderOptions(batch_size=12))]
    ref = _logits(fp32, feeds).argmax(1)
    a.mean_bits = float(a.mean_bits.split(",")[0])
    agree = lambda m: float(np.mean(_logits(m, feeds).argmax(1) == ref))
    tag = f"{a.mean_bits}{'-int8' if a.int8_grid else ''}{'-model' if a.sensitivity == 'model' else ''}"
    path = Path(a.shared) if a.shared else Path(str(EFF_SHARED).format(tag=tag))
    t = time.perf_counter()
    if path.is_file():
        shared = onnx.load(path)
    else:
        base = normalize(fp32, NormalizeConfig()).model
        cfg = ShareConfig(rule="size", mean_bits=a.mean_bits, int8_grid=a.int8_grid, calib="photos:calib", preprocess="efficientnet-lite",
                          limit=a.calib_limit, sensitivity=a.sensitivity, threads=1)
        shared = share(base, cfg).model
        WORK.mkdir(exist_ok=True)
        onnx.save(shared, path)
    out = {"fp32_bytes": fp32_bytes, "split": a.split, "train": a.train, "samples": int(ref.size), "mean_bits": a.mean_bits, "int8_grid": a.int8_grid,
           "share_seconds": time.perf_counter() - t, "shared": {"agreement": agree(shared), "packed": _packed(shared)}}
    out["shared"]["ratio"] = fp32_bytes / out["shared"]["packed"]
    print(out, flush=True)
    t = time.perf_counter()
    ft = finetune(shared, FinetuneStageConfig(
        torch_model="trtcompress.zoo:efficientnet_lite0", train=tuple(a.train.split(",")), preprocess="efficientnet-lite",
        steps=a.steps, batch_size=a.batch, lr=a.lr, norm_samples=a.norm_samples, exporter="dynamo", inputs=("x:1x3x224x224",),
        progress=False, threads=a.threads, centroids_only=a.centroids_only))
    rep = ft.report
    out["trained"] = {"seconds": time.perf_counter() - t, "agreement": agree(ft.model), "packed": _packed(ft.model), "onnx": ft.model.ByteSize(),
                      "steps": rep["steps"], "loss_curve": rep["loss_curve"], "snap_shift": rep["structure"]["centroids"].get("snap_shift"),
                      "export_rel_error": max(l["rel_error"] for l in rep["structure"]["centroids"]["written"])}
    out["trained"]["ratio"] = fp32_bytes / out["trained"]["packed"]
    print(out["trained"], flush=True)
    return out


def alloc(a) -> dict:
    """EfficientNet-Lite0: normalize -> share (size rule) with the bits per layer allocated by each
    layer's own output error (``layer``) or by the model's output error with only that layer shared
    (``model``), for each ``SENSITIVITY:MEAN_BITS`` of ``--alloc``; packed; top-1 agreement with
    FP32 on the views of ``--split`` (settings are chosen on ``tune``; ``heldout`` measured once)."""
    from trtcompress.data import model_inputs, open_source
    from trtcompress.data.readers import ReaderOptions
    from trtcompress.stage import StageResult
    from trtcompress.stages.normalize import NormalizeConfig, normalize

    fp32, fp32_bytes = onnx.load(a.model), Path(a.model).stat().st_size
    feeds = [f["x"] for f in open_source(f"photos:{a.split}", model_inputs(fp32), ReaderOptions(batch_size=12))]
    logits = _logits(fp32, feeds)
    ref = logits.argmax(1)
    base = normalize(fp32, NormalizeConfig()).model
    out = {"fp32_bytes": fp32_bytes, "split": a.split, "samples": int(ref.size), "int8_grid": a.int8_grid, "calib_limit": a.calib_limit,
           "min_bits": a.min_bits, "runs": []}
    WORK.mkdir(exist_ok=True)
    for spec in a.alloc.split(","):
        sens, mean = spec.split(":")
        cfg = ShareConfig(rule="size", mean_bits=float(mean), int8_grid=a.int8_grid, calib="photos:calib", preprocess="efficientnet-lite",
                          limit=a.calib_limit, min_bits=a.min_bits, sensitivity=sens, threads=1)
        path = WORK / f"efficientnet_lite0-alloc-{sens}-{mean}{'-int8' if a.int8_grid else ''}-{a.calib_limit}.onnx"
        t = time.perf_counter()
        if a.reuse and path.is_file():  # the model a tune run shared, for heldout (its report where saved)
            report = path.with_suffix(".json")
            r = StageResult(onnx.load(path), json.loads(report.read_text()) if report.is_file() else {"mean_bits": None, "layers": []})
            secs = None
        else:
            r = share(base, cfg)
            secs = time.perf_counter() - t
            onnx.save(r.model, path)
            path.with_suffix(".json").write_text(json.dumps(r.report, default=str))
        packed = _packed(r.model)
        got = _logits(r.model, feeds)
        # additivity: the logits' relative error of the whole shared model on the split, beside the root of the
        # summed squared per-layer errors the rule saw (model sensitivity: each at the logits, on calib views)
        row = {"sensitivity": sens, "mean_bits": float(mean), "agreement": float(np.mean(got.argmax(1) == ref)),
               "logit_rel_error": float(np.linalg.norm(got - logits) / np.linalg.norm(logits)),
               "summed_layer_errors": float(np.sqrt(sum(l["output_rel_error"] ** 2 for l in r.report["layers"]))) if r.report["layers"] else None,
               "packed": packed, "ratio": fp32_bytes / packed, "share_seconds": secs, "bits_mean": r.report["mean_bits"],
               "bits": {l["layer"]: l["bits"] for l in r.report["layers"]}}
        out["runs"].append(row)
        print({k: v for k, v in row.items() if k != "bits"}, flush=True)
    return out


def _int8grid_args(a) -> tuple[tuple[int, ...], tuple[float, ...]]:
    split = lambda v, t: tuple(t(x) for x in v.split(",") if x)
    return split(a.bits, int), split(a.mean_bits, float)


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--part", choices=("fashion", "efficientnet", "kmeans", "peers", "int8grid", "trained-fashion", "trained-efficientnet", "alloc"), required=True)
    p.add_argument("model", nargs="?")
    p.add_argument("--grid", default="0.3:3,0.3:4,0.3:5,0.5:3,0.5:4,0.5:5,0.7:3,0.7:4,0.7:5,0.8:3,0.8:4", help="fashion: PRUNE:BITS,...")
    p.add_argument("--bits", default="4,5", help="int8grid: fixed bits per layer to try")
    p.add_argument("--mean-bits", default="4.0,4.5", help="int8grid: size budgets (bits per weight) to try")
    p.add_argument("--configs", default="layer:5,layer:4,channel:5,channel:4", help="efficientnet: GRANULARITY:BITS,...")
    p.add_argument("--sparsity", default="features.0.0=0.5,head.4=0.5,head.1=0.96,features.5.*=0.85,*=0.75", help="trained-fashion: MODULE_GLOB=FRACTION,...")
    p.add_argument("--rounds", type=int, default=3, help="trained-fashion: pruning rounds")
    p.add_argument("--prune-steps", type=int, default=400, help="trained-fashion: retraining steps per round")
    p.add_argument("--prune-lr", type=float, default=1e-3)
    p.add_argument("--reuse-pruned", action="store_true", help="trained-fashion: keep the pruned model of an earlier run")
    p.add_argument("--int8-grid", action="store_true")
    p.add_argument("--centroids-only", action="store_true", help="train the centroids alone (Deep Compression), not biases and norms")
    p.add_argument("--steps", type=int, default=400, help="trained-*: centroid training steps")
    p.add_argument("--lr", type=float, default=1e-4)
    p.add_argument("--batch", type=int, default=8, help="trained-efficientnet: batch")
    p.add_argument("--norm-samples", type=int, default=256)
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--train", default="photos:calib,photos:tune", help="trained-efficientnet: unlabelled training data specs (e.g. add 'stamps')")
    p.add_argument("--shared", help="trained-efficientnet: start from this shared model (e.g. another budget rule's) instead of sharing")
    p.add_argument("--alloc", default="layer:4.0,model:4.0", help="alloc: SENSITIVITY:MEAN_BITS,... (size rule)")
    p.add_argument("--split", help="the photo split agreement is measured on (alloc: tune to choose, heldout once; trained-efficientnet: heldout)")
    p.add_argument("--calib-limit", type=int, default=32, help="alloc, trained-efficientnet: calib views the size rule measures on")
    p.add_argument("--min-bits", type=int, default=1, help="alloc: fewest bits a layer gets")
    p.add_argument("--reuse", action="store_true", help="alloc: load the model an earlier run shared with the same settings")
    p.add_argument("--sensitivity", default="layer", help="trained-efficientnet: the size rule's sensitivity (layer or model)")
    a = p.parse_args()
    a.split = a.split or ("tune" if a.part == "alloc" else "heldout")
    if a.part == "trained-fashion" and a.bits == "4,5":
        a.bits = "4"
    grid = [(float(g.split(":")[0]), int(g.split(":")[1])) for g in a.grid.split(",")]
    result = {"fashion": lambda: fashion(grid), "efficientnet": lambda: efficientnet(a.model, [(c.split(":")[0], int(c.split(":")[1])) for c in a.configs.split(",")]), "kmeans": lambda: kmeans_time(a.model), "peers": lambda: peers(a.model), "int8grid": lambda: int8grid(a.model, *_int8grid_args(a)),
              "trained-fashion": lambda: trained_fashion(a), "trained-efficientnet": lambda: trained_efficientnet(a), "alloc": lambda: alloc(a)}[a.part]()
    WORK.mkdir(exist_ok=True)
    (WORK / f"share_{a.part}.json").write_text(json.dumps(result, indent=1, default=str))
    print(json.dumps({k: v for k, v in result.items() if k != "sweep"}, indent=1))


if __name__ == "__main__":
    main()
