"""Low-rank factorisation: accuracy after distillation, FLOP reduction against measured CPU speedup,
and exact against randomised SVD.

    .venv/bin/python benchmarks/lowrank.py                  # all parts
    .venv/bin/python benchmarks/lowrank.py --part distill   # Fashion CNN: factorise to 50% FLOPs, distil
    .venv/bin/python benchmarks/lowrank.py --part speed     # per model: FLOPs vs ONNX Runtime speedup
    .venv/bin/python benchmarks/lowrank.py --part svd       # exact vs randomised SVD time and error
    .venv/bin/python benchmarks/lowrank.py --part allocation  # greedy vs uniform FLOP allocation

The SVD part is best run with ``OPENBLAS_NUM_THREADS=1`` on a shared machine (multithreaded BLAS
under contention from other processes slows LAPACK by 10x or more). Writes ``benchmarks/_work/lowrank.json`` and prints Markdown tables for RESULTS.md. Speed is
measured with trtcompress.benchmark: dense and factorised models interleaved in the same run, ONNX
Runtime CPU, 2 threads, batch 1 and 32; ratios are of median latencies.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import onnx

from trtcompress.benchmark import BenchConfig, bench
from trtcompress.lowrank import LowRankConfig, factorize_onnx
from trtcompress.model_io import save_model
from trtcompress.runners import RunnerOptions

WORK = Path(__file__).parent / "_work"
sys.path.insert(0, str(Path(__file__).resolve().parent))
FRACTION = 0.5  # keep this share of the factorised layers' FLOPs


def _session(path):
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = 2
    return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])


def fashion_accuracy(path, limit=None) -> float:
    from trtcompress.zoo import fashion_mnist

    x, y = fashion_mnist("test", limit)
    sess = _session(path)
    name = sess.get_inputs()[0].name
    pred = np.concatenate([sess.run(None, {name: x[i : i + 500]})[0].argmax(-1) for i in range(0, len(x), 500)])
    return float(np.mean(pred == y))


def photo_agreement(dense, fact) -> float:
    from trtcompress.zoo import photo_batch

    a, b = _session(dense), _session(fact)
    name = a.get_inputs()[0].name
    same = total = 0
    for x in photo_batch("eval", "efficientnet-lite", augment=True, batch_size=16):
        pa, pb = a.run(None, {name: x})[0].argmax(-1), b.run(None, {name: x})[0].argmax(-1)
        same += int((pa == pb).sum())
        total += len(pa)
    return same / total


def _effnet_onnx() -> Path:
    from importlib.metadata import version

    from _cache import keyed

    path = keyed(WORK / "efficientnet_lite0.onnx", version("torch"))
    if not path.is_file():
        from trtcompress.torch_export import ExportConfig, export_module
        from trtcompress.zoo import efficientnet_lite0

        export_module(efficientnet_lite0(), path, ExportConfig(inputs=("x:1x3x224x224",)))
    return path


def _models() -> dict[str, tuple[Path, str]]:
    """name -> (dense ONNX, accuracy kind)."""
    from trtcompress.errors import UserError
    from trtcompress.zoo import onnx_path

    out = {}
    for name in ("fashion_cnn", "fashion_vit"):
        try:
            out[name] = (onnx_path(name), "fashion")
        except UserError as e:
            print(f"skipping {name}: {e}")
    out["efficientnet_lite0"] = (_effnet_onnx(), "photos")
    return out


def part_speed(results: dict, extra: dict[str, Path] | None = None, iterations: int = 200) -> None:
    rows = []
    for name, (dense, kind) in _models().items():
        t0 = time.perf_counter()
        res = factorize_onnx(onnx.load(str(dense)), LowRankConfig(rule="flops", flop_fraction=FRACTION))
        seconds = time.perf_counter() - t0
        fact = save_model(res.model, WORK / f"{name}.lowrank.onnx")
        rep = res.report
        row = {
            "model": name,
            "flops_dense": rep["flops_before"],
            "flops_lowrank": rep["flops_after"],
            "flop_reduction": rep["flop_reduction"],
            "factorised_layers": rep["factorised"],
            "skipped_layers": len(rep["skipped"]),
            "params_dense": rep["params_before"],
            "params_lowrank": rep["params_after"],
            "factorise_seconds": round(seconds, 2),
            "svd_seconds": rep["svd_seconds"],
        }
        if kind == "fashion":
            row["accuracy_dense"] = fashion_accuracy(dense)
            row["accuracy_lowrank_no_finetune"] = fashion_accuracy(fact)
        else:
            row["top1_agreement_no_finetune"] = photo_agreement(dense, fact)
        models = [dense, fact]
        labels = ["dense", "lowrank"]
        if extra and name in extra:
            models.append(extra[name])
            labels.append("lowrank_distilled")
        b = bench(models, BenchConfig(batch_sizes=(1, 32), warmup=10, iterations=iterations if kind == "fashion" else iterations // 4, rounds=5), options=RunnerOptions(threads=2), labels=labels)
        row["speedup_p50"] = {str(bs): {k: round(v, 3) for k, v in r.items() if k != "dense"} for bs, r in b.ratios.items()}
        row["latency_p50_ms"] = {str(bs): {k: round(v["p50_ms"], 3) for k, v in r.items()} for bs, r in b.results.items()}
        row["layers"] = rep["layers"]
        row["skipped"] = rep["skipped"]
        rows.append(row)
        print(f"{name}: FLOPs x{row['flop_reduction']:.2f}, speedup {row['speedup_p50']}")
    results["speed"] = rows


def _distilled_path(epochs: int, steps: int | None) -> Path:
    from _cache import keyed

    return keyed(WORK / "fashion_cnn.lowrank.distilled.onnx", epochs, steps)


def part_distill(results: dict, epochs: int, steps: int | None, threads: int) -> Path:
    import torch

    from trtcompress.finetune import FinetuneConfig, apply_transform, evaluate, finetune, open_training_data
    from trtcompress.finetune.export import export_student
    from trtcompress.zoo import fashion_cnn

    torch.set_num_threads(threads)
    teacher = fashion_cnn()
    train = open_training_data("fashion-mnist:train", 128)
    test = open_training_data("fashion-mnist:test", 1000, shuffle=False)
    example = torch.zeros(1, 1, 28, 28)
    student, rep = apply_transform(f"lowrank:rule=flops,flop_fraction={FRACTION}", teacher, example)
    cfg = FinetuneConfig(epochs=epochs, steps=steps, lr=1e-3, schedule="cosine", alpha=0.5, temperature=4.0, batch_size=128, seed=0, checkpoint_dir=str(WORK / "ckpt-fashion-cnn"), checkpoint_every=200, progress=True)
    acc_teacher = evaluate(teacher, test)
    acc_before = evaluate(student, test)
    print(f"dense {acc_teacher:.4f}, factorised before distillation {acc_before:.4f}", flush=True)
    t0 = time.perf_counter()
    res = finetune(student, teacher, train, cfg)
    seconds = time.perf_counter() - t0
    acc_after = evaluate(res.student, test)
    path = export_student(res.student, example, _distilled_path(epochs, steps))
    results["distill"] = {
        "model": "fashion_cnn",
        "rule": f"flops, flop_fraction={FRACTION}",
        "factorised_flops_before": rep["factorised_flops_before"],
        "factorised_flops_after": rep["factorised_flops_after"],
        "factorised_flop_fraction": rep["factorised_flop_fraction"],
        "layers": [{k: l[k] for k in ("name", "rank", "break_even_rank", "energy", "flops_before", "flops_after")} for l in rep["layers"]],
        "skipped": rep["skipped"],
        "accuracy_dense": acc_teacher,
        "accuracy_factorised": acc_before,
        "accuracy_distilled": acc_after,
        "accuracy_distilled_onnx": fashion_accuracy(path),
        "gap_points": round(100 * (acc_teacher - acc_after), 2),
        "finetune": {"steps": res.steps, "seconds": round(seconds, 1), "config": cfg.to_dict()},
    }
    print(json.dumps({k: v for k, v in results["distill"].items() if k not in ("layers", "skipped")}, indent=2))
    return path


def part_allocation(results: dict) -> None:
    """One-shot top-1 agreement with the dense model: greedy against uniform FLOP allocation."""
    import onnxruntime as ort

    from trtcompress.zoo import fashion_mnist, onnx_path, photo_batch

    x, _ = fashion_mnist("test", 2000)
    fashion = [x[i : i + 500] for i in range(0, 2000, 500)]
    cases = [("fashion_cnn", onnx_path("fashion_cnn"), fashion), ("fashion_vit", onnx_path("fashion_vit"), fashion), ("efficientnet_lite0", _effnet_onnx(), list(photo_batch("eval", "efficientnet-lite", augment=False, batch_size=16)))]
    rows = []
    for name, path, xs in cases:
        model = onnx.load(str(path))
        run = lambda m: [ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"x": b})[0].argmax(-1) for b in xs]
        ref = run(model)
        for fraction in (0.8, 0.5):
            for allocation in ("greedy", "uniform"):
                res = factorize_onnx(model, LowRankConfig(rule="flops", flop_fraction=fraction, allocation=allocation))
                agree = float(np.mean(np.concatenate([a == b for a, b in zip(run(res.model), ref)])))
                rows.append({"model": name, "flop_fraction": fraction, "allocation": allocation, "flop_reduction": res.report["flop_reduction"], "factorised": res.report["factorised"], "top1_agreement": agree})
                print(rows[-1], flush=True)
    results["allocation"] = rows


def _power_law(m: int, n: int, seed: int = 0) -> np.ndarray:
    """Gaussian factors around a spectrum decaying like 1/i, the shape trained weights tend to have."""
    rng = np.random.default_rng(seed)
    k = min(m, n)
    s = 1.0 / np.arange(1, k + 1)
    return (rng.standard_normal((m, k)) / np.sqrt(m)) * s @ (rng.standard_normal((k, n)) / np.sqrt(n))


def part_svd(results: dict) -> None:
    from trtcompress.lowrank.svd import exact_svd, randomized_svd

    cases = []
    mats = {f"power-law {m}x{n}": _power_law(m, n) for m, n in ((512, 512), (1024, 1024), (2048, 2048), (4096, 1024))}
    try:
        from trtcompress.zoo import efficientnet_lite0

        import torch

        fc = [m for m in efficientnet_lite0().modules() if isinstance(m, torch.nn.Linear)][-1].weight.detach().double().numpy()
        mats[f"EfficientNet-Lite0 classifier {fc.shape[0]}x{fc.shape[1]}"] = fc
    except Exception as e:  # the report says what was left out
        print(f"no EfficientNet weights: {e}")
    for name, a in mats.items():
        t0 = time.perf_counter()
        _, s, _ = exact_svd(a)
        t_exact = time.perf_counter() - t0
        for frac in (16, 8, 4):
            k = min(a.shape) // frac
            t0 = time.perf_counter()
            u, sr, vt = randomized_svd(a, k, oversample=10, power_iters=2, seed=0)
            t_rand = time.perf_counter() - t0
            err = np.linalg.norm(a - (u * sr) @ vt)
            opt = np.sqrt(np.sum(s[k:] ** 2))
            cases.append({"matrix": name, "k": k, "exact_s": round(t_exact, 3), "randomized_s": round(t_rand, 3), "speedup": round(t_exact / t_rand, 2), "error_vs_optimal": round(float(err / opt), 4), "top_sv_rel_err": float(np.max(np.abs(sr - s[:k]) / s[:k]))})
            print(cases[-1])
    results["svd"] = cases


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--part", choices=("all", "distill", "speed", "svd", "allocation"), default="all")
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--steps", type=int, default=None, help="optimizer steps (overrides --epochs)")
    ap.add_argument("--threads", type=int, default=2, help="torch threads for distillation")
    ap.add_argument("--iterations", type=int, default=200)
    args = ap.parse_args()
    WORK.mkdir(parents=True, exist_ok=True)
    out = WORK / "lowrank.json"
    results = json.loads(out.read_text()) if out.is_file() else {}
    results["date"] = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    extra = {}
    if args.part in ("all", "distill"):
        extra["fashion_cnn"] = part_distill(results, args.epochs, args.steps, args.threads)
        out.write_text(json.dumps(results, indent=2))
    elif _distilled_path(args.epochs, args.steps).is_file():  # from the same code and options only
        extra["fashion_cnn"] = _distilled_path(args.epochs, args.steps)
    if args.part in ("all", "speed"):
        part_speed(results, extra, args.iterations)
        out.write_text(json.dumps(results, indent=2))
    if args.part in ("all", "svd"):
        part_svd(results)
    if args.part in ("all", "allocation"):
        part_allocation(results)
    out.write_text(json.dumps(results, indent=2))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
