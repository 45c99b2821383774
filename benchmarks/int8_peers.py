"""INT8 calibration against the peers: ONNX Runtime's quantize_static and NVIDIA Model Optimizer.

Each tool quantizes the same FP32 ONNX model with entropy calibration on the same data, as a
whole command (a fresh process: start-up, calibration, writing the model), run interleaved so
that load on the machine hits every tool alike. Then every INT8 model is measured the same way:
accuracy against FP32 on held-out data, CPU latency (ONNX Runtime, batch 1 and 32, interleaved
with FP32), file size.

- ours: ``trtcompress quantize MODEL --calib DIR --method entropy --target tensorrt -o OUT``
  when the quantize verb is installed; before that, our calibration alone through the Python API
  (``--ours api``), which writes no model and so has no accuracy or latency.
- ONNX Runtime: ``quantize_static`` with CalibrationMethod.Entropy, 2048 histogram bins and 128
  quantized bins (quantize_static does not pass a bin count through, so the calibrator factory is
  wrapped to set them), symmetric int8 activations and weights, per-channel, QDQ format.
- Model Optimizer: ``python -m modelopt.onnx.quantization --quantize_mode int8
  --calibration_method entropy`` from ``nvidia-modelopt[onnx]`` in its own virtual environment
  (``benchmarks/_work/modelopt-venv``), on a copy of the model (it writes into its input's folder).

Usage::

    python benchmarks/int8_peers.py [--models effnet,fashion_cnn,fashion_vit] [--repeat 2]
        [--tools ours,ort,modelopt] [--ours auto|cli|api] [--out benchmarks/_work/int8_peers.json]

Set up Model Optimizer once: ``python3 -m venv benchmarks/_work/modelopt-venv &&
benchmarks/_work/modelopt-venv/bin/pip install "nvidia-modelopt[onnx]" torch==2.13.0``.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))
WORK = ROOT / "benchmarks" / "_work"
MODELOPT_PY = WORK / "modelopt-venv" / "bin" / "python"
CALIB_BATCH = 32


# -- models and data ------------------------------------------------------------------------------


def prepare(name: str, calib_limit: int | None) -> dict:
    """FP32 ONNX, calibration data (npz dir + one npz) and evaluation data for ``name``."""
    from trtcompress import zoo

    from importlib.metadata import version

    from _cache import keyed

    d = WORK / name
    d.mkdir(parents=True, exist_ok=True)
    fp32 = d / "fp32.onnx"
    if name == "effnet":
        export = keyed(d / "fp32-export.onnx", version("torch"))  # the export is reused only from the same code and torch
        if not export.exists():
            _export_effnet(export)
        shutil.copy(export, fp32)
        cal = np.concatenate(list(zoo.photo_batch("calib", "efficientnet-lite", augment=True, batch_size=64)))
        ev = np.concatenate(list(zoo.photo_batch("eval", "efficientnet-lite", augment=True, batch_size=64)))
        labels = None
    else:
        shutil.copy(zoo.onnx_path(name), fp32)  # every run: a copy from an older zoo is never measured
        cal = np.concatenate([np.load(f)["x"] for f in sorted((ROOT / "calibration" / "fashion_mnist").glob("*.npz"))])
        ev, labels = zoo.fashion_mnist("test")  # the whole test set: 5000 images left a 3-image gap within noise
    if calib_limit:
        cal = cal[:calib_limit]
    wide = None
    if labels is not None:
        # every Fashion-MNIST image the calibration did not see, for flip counts with less noise
        seen = {x.tobytes() for x in cal}
        train = zoo.fashion_mnist("train")[0]
        wide = np.concatenate([train[[x.tobytes() not in seen for x in train]], ev])
    import onnx

    input_name = onnx.load(str(fp32), load_external_data=False).graph.input[0].name
    npz_dir = d / "calib_npz"
    if npz_dir.exists():
        shutil.rmtree(npz_dir)
    npz_dir.mkdir()
    for k in range(0, len(cal), CALIB_BATCH):
        np.savez(npz_dir / f"{k // CALIB_BATCH:04d}.npz", **{input_name: cal[k : k + CALIB_BATCH]})
    np.savez(d / "calib_all.npz", **{input_name: cal})
    return {"name": name, "dir": d, "fp32": fp32, "input": input_name, "calib": cal, "eval": ev, "labels": labels, "wide": wide}


def _export_effnet(path: Path) -> None:
    import torch

    from trtcompress import zoo

    model = zoo.efficientnet_lite0()
    tmp = path.with_suffix(".tmp.onnx")
    torch.onnx.export(model, (torch.randn(1, 3, 224, 224),), str(tmp), input_names=["input"], output_names=["logits"],
                      dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}}, dynamo=False, opset_version=17)
    os.replace(tmp, path)


# -- the tools, each a whole command in a fresh process ---------------------------------------------


def cmd_ours(m: dict, out: Path, mode: str) -> list[str]:
    if mode == "cli":
        return [str(Path(sys.executable).parent / "trtcompress"), "quantize", str(m["fp32"]), "--calib", str(m["dir"] / "calib_npz"),
                "--method", "entropy", "--target", "tensorrt", "-o", str(out)]
    return [sys.executable, __file__, "_ours_api", str(m["fp32"]), str(m["dir"] / "calib_npz")]


def cmd_ort(m: dict, out: Path) -> list[str]:
    return [sys.executable, __file__, "_ort", str(m["fp32"]), str(m["dir"] / "calib_all.npz"), str(out)]


def cmd_modelopt(m: dict, out: Path) -> list[str]:
    src = out.parent / "modelopt_input.onnx"
    shutil.copy(m["fp32"], src)  # Model Optimizer writes intermediate files beside its input
    return [str(MODELOPT_PY), "-m", "modelopt.onnx.quantization", "--onnx_path", str(src), "--quantize_mode", "int8",
            "--calibration_method", "entropy", "--calibration_data_path", str(m["dir"] / "calib_all.npz"),
            "--calibration_eps", "cpu", "--output_path", str(out)]


def _ours_api(model: str, calib: str) -> None:
    """Our calibration alone (before the quantize verb): Conv/ConvTranspose/Gemm/MatMul activation inputs."""
    import onnx

    from trtcompress.data import model_inputs, open_source
    from trtcompress.quant.calibrate import CollectConfig, calibrate

    proto = onnx.load(model, load_external_data=False)
    inits = {t.name for t in proto.graph.initializer}
    tensors = [n.input[0] for n in proto.graph.node if n.op_type in ("Conv", "ConvTranspose", "Gemm", "MatMul") and n.input[0] not in inits]
    tensors += [n.input[1] for n in proto.graph.node if n.op_type == "MatMul" and n.input[1] not in inits]
    table = calibrate(model, tensors, open_source(calib, model_inputs(proto)), "entropy", CollectConfig(progress=False))
    print(json.dumps({"tensors": len(table.amax), "seconds": table.details["seconds"]}))


def ort_entropy_bins() -> None:
    """ONNX Runtime's entropy calibrator with 2048 bins and 128 quantized bins (TensorRT's), which
    quantize_static has no option for: its calibrator factory is wrapped in this process."""
    import onnxruntime.quantization  # noqa: F401

    q = sys.modules["onnxruntime.quantization.quantize"]  # the package re-exports a function of that name
    make = q.create_calibrator

    def create_calibrator(*args, **kwargs):
        kwargs["extra_options"] = {**(kwargs.get("extra_options") or {}), "num_bins": 2048, "num_quantized_bins": 128}
        return make(*args, **kwargs)

    q.create_calibrator = create_calibrator  # quantize_static passes no bin count through


def _ort(model: str, calib: str, out: str) -> None:
    from onnxruntime.quantization import CalibrationDataReader, CalibrationMethod, QuantFormat, QuantType, quantize_static

    ort_entropy_bins()

    data = np.load(calib)
    name = data.files[0]
    x = data[name]

    # equal batches: ONNX Runtime's histogram collector stacks batch outputs and fails on a short last batch
    bs = max(b for b in range(1, CALIB_BATCH + 1) if len(x) % b == 0)

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.it = iter([{name: x[i : i + bs]} for i in range(0, len(x), bs)])

        def get_next(self):
            return next(self.it, None)

    quantize_static(model, out, Reader(), quant_format=QuantFormat.QDQ, per_channel=True, activation_type=QuantType.QInt8,
                    weight_type=QuantType.QInt8, calibrate_method=CalibrationMethod.Entropy,
                    extra_options={"ActivationSymmetric": True, "WeightSymmetric": True, "CalibTensorRangeSymmetric": True,
                                   # hand intermediate outputs to the histograms every 4 batches: without it
                                   # ONNX Runtime keeps every activation of the whole data set in memory
                                   "CalibMaxIntermediateOutputs": 4})


def timed(cmd: list[str], log: Path) -> tuple[float, int]:
    t = time.perf_counter()
    with open(log, "w") as f:
        rc = subprocess.run(cmd, stdout=f, stderr=subprocess.STDOUT, cwd=ROOT).returncode
    return time.perf_counter() - t, rc


# -- measuring the outputs --------------------------------------------------------------------------


def evaluate(m: dict, path: Path, ref: np.ndarray | None, simulate: bool = True) -> tuple[dict, np.ndarray]:
    """Accuracy against FP32. ``simulate``: Q/DQ computed in float (ORT_ENABLE_BASIC), which is
    what TensorRT computes; otherwise ONNX Runtime's own INT8 kernels (what the CPU runs)."""
    out = outputs(m, path, m["eval"], simulate, 64)
    suffix = "" if simulate else "_ortcpu"
    r = {} if not simulate else {"file_mb": round(_size(path) / 1e6, 2)}
    if m["labels"] is not None:
        r["accuracy" + suffix] = round(float((out.argmax(1) == m["labels"]).mean()) * 100, 2)
    if ref is not None:
        r["top1_agreement" + suffix] = round(float((out.argmax(1) == ref.argmax(1)).mean()) * 100, 2)
        cos = np.sum(out * ref, 1) / (np.linalg.norm(out, axis=1) * np.linalg.norm(ref, axis=1) + 1e-30)
        r["cosine" + suffix] = round(float(cos.mean()), 4)
        err = float(np.sum((out.astype(np.float64) - ref) ** 2))
        r["logit_sqnr_db" + suffix] = round(10 * np.log10(float(np.sum(ref.astype(np.float64) ** 2)) / err), 2) if err > 0 else float("inf")
    return r, out


def outputs(m: dict, path: Path, x: np.ndarray, simulate: bool = True, batch: int = 1000) -> np.ndarray:
    """The first output of ``path`` on ``x`` (2 threads; ``simulate`` as in :func:`evaluate`)."""
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads, so.log_severity_level = 2, 3
    if simulate:
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
    s = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
    return np.concatenate([s.run(None, {m["input"]: x[i : i + batch]})[0] for i in range(0, len(x), batch)])


def sign_test(ours: np.ndarray, peer: np.ndarray) -> dict:
    """Images only ours flips, images only the peer flips, and the exact two-sided sign test's p
    (McNemar's exact test): how likely so uneven a split is if both tools flipped as often."""
    b, c = int(np.sum(ours & ~peer)), int(np.sum(peer & ~ours))
    n = b + c
    p = min(1.0, 2 * sum(math.comb(n, k) for k in range(min(b, c) + 1)) / 2**n) if n else 1.0
    return {"only_ours": b, "only_peer": c, "p": float(f"{p:.2g}")}


def _size(path: Path) -> int:
    from trtcompress.model_io import file_size

    return file_size(path)


def latency(paths: dict[str, Path], batch: int) -> dict[str, float]:
    """Median ms per batch: trtcompress's interleaved benchmark (one live session at a time)."""
    from trtcompress.benchmark import BenchConfig, bench
    from trtcompress.runners import RunnerOptions

    labels = list(paths)
    r = bench([str(p) for p in paths.values()], BenchConfig(batch_sizes=(batch,), iterations=50, rounds=5), options=RunnerOptions(threads=2), labels=labels)
    return {k: round(r.results[batch][k]["p50_ms"], 2) for k in labels}


# -- main -------------------------------------------------------------------------------------------


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--models", default="effnet,fashion_cnn,fashion_vit")
    ap.add_argument("--tools", default="ours,ort,modelopt")
    ap.add_argument("--ours", default="auto", choices=["auto", "cli", "api"])
    ap.add_argument("--repeat", type=int, default=1)
    ap.add_argument("--calib-limit", type=int, default=None)
    ap.add_argument("--no-latency", action="store_true")
    ap.add_argument("--out", default=str(WORK / "int8_peers.json"))
    args = ap.parse_args()
    tools = args.tools.split(",")
    mode = args.ours
    if mode == "auto":
        from trtcompress.cli.main import VERBS

        mode = "cli" if "quantize" in VERBS else "api"
    if "modelopt" in tools and not MODELOPT_PY.exists():
        sys.exit(f"Model Optimizer venv missing: {MODELOPT_PY} (see this script's docstring)")
    results = {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "ours_mode": mode, "models": {}}
    for name in args.models.split(","):
        m = prepare(name, args.calib_limit)
        res: dict = {"calib_samples": int(len(m["calib"])), "eval_samples": int(len(m["eval"])), "tools": {}}
        outs = {t: m["dir"] / f"int8_{t}.onnx" for t in tools}
        walls: dict[str, list[float]] = {t: [] for t in tools}
        commands = {"ours": lambda: cmd_ours(m, outs["ours"], mode), "ort": lambda: cmd_ort(m, outs["ort"]), "modelopt": lambda: cmd_modelopt(m, outs["modelopt"])}
        for rep in range(args.repeat):
            for t in tools:  # interleaved
                if outs[t].exists():
                    outs[t].unlink()
                cmd = commands[t]()
                wall, rc = timed(cmd, m["dir"] / f"{t}.log")
                print(f"[{name}] {t} run {rep}: {wall:.1f} s (rc {rc})", flush=True)
                if rc != 0:
                    print(f"  failed, see {m['dir'] / f'{t}.log'}", flush=True)
                walls[t].append(wall)
                res["tools"].setdefault(t, {})["rc"] = rc
        for t in tools:
            res["tools"][t]["wall_s"] = [round(w, 2) for w in walls[t]]
            res["tools"][t]["command"] = " ".join(str(c) for c in commands[t]())
        if "ours" in tools:
            for t in tools:
                if t != "ours":
                    res["tools"][t]["wall_vs_ours"] = round(min(walls[t]) / min(walls["ours"]), 2)
        fp32_eval, ref = evaluate(m, m["fp32"], None)
        res["fp32"] = fp32_eval
        wide_ref = outputs(m, m["fp32"], m["wide"]).argmax(1) if m["wide"] is not None else None
        if wide_ref is not None:
            res["wide_samples"] = int(len(wide_ref))
        models = {"fp32": m["fp32"]}
        flips: dict[str, np.ndarray] = {}
        for t in tools:
            if outs[t].exists() and res["tools"][t]["rc"] == 0:
                res["tools"][t].update(evaluate(m, outs[t], ref)[0])
                res["tools"][t].update(evaluate(m, outs[t], ref, simulate=False)[0])
                if wide_ref is not None:
                    flips[t] = outputs(m, outs[t], m["wide"]).argmax(1) != wide_ref
                    res["tools"][t]["disagreements_wide"] = int(flips[t].sum())
                models[t] = outs[t]
        if "ours" in flips:
            for t in flips:
                if t != "ours":
                    res["tools"][t]["flips_against_ours"] = sign_test(flips["ours"], flips[t])
        if not args.no_latency:
            for b in (1, 32):
                ms = latency(models, b)
                for k, v in ms.items():
                    target = res["fp32"] if k == "fp32" else res["tools"][k]
                    target[f"ms_b{b}"] = v
                    if k != "fp32":
                        target[f"speedup_b{b}"] = round(ms["fp32"] / v, 2)
        results["models"][name] = res
        print(json.dumps(res, indent=1), flush=True)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(results, indent=1))
    print(f"wrote {args.out}")


def markdown(paths: list[str]) -> str:
    """A results table from one or more JSON files this script wrote."""
    rows = ["| model | tool | wall s | peer / ours | accuracy or top-1 agreement (sim) | agreement with FP32 / logit SQNR dB (sim) | top-1 flips against FP32 on every unseen image (sim) | same on ORT CPU kernels | CPU speedup b1 / b32 | MB |",
            "|---|---|---|---|---|---|---|---|---|---|"]
    for path in paths:
        r = json.loads(Path(path).read_text())
        for name, v in r["models"].items():
            f = v["fp32"]
            acc_key = "accuracy" if "accuracy" in f else "top1_agreement"
            fp = f"{f['accuracy']}%" if "accuracy" in f else "100%"
            wide = f"0 of {v['wide_samples']}" if "wide_samples" in v else ""
            rows.append(f"| {name} ({v['calib_samples']} calib) | FP32 | | | {fp} | 100 / inf | {wide} | | 1.00 / 1.00 ({f.get('ms_b1')} / {f.get('ms_b32')} ms) | {f['file_mb']} |")
            for t, x in v["tools"].items():
                acc = x.get(acc_key, x.get("top1_agreement", "n/a"))
                cpu = x.get(acc_key + "_ortcpu", "n/a")
                fidelity = f"{x.get('top1_agreement', 'n/a')} / {x.get('logit_sqnr_db', 'n/a')}"
                flips = str(x.get("disagreements_wide", ""))
                if "flips_against_ours" in x:
                    st = x["flips_against_ours"]
                    flips += f" ({st['only_peer']} not flipped by ours, {st['only_ours']} the other way; p {st['p']})"
                rows.append(f"| | {t} | {min(x['wall_s'])} | {x.get('wall_vs_ours', '')} | {acc} | {fidelity} | {flips} | {cpu} | "
                            f"{x.get('speedup_b1', 'n/a')} / {x.get('speedup_b32', 'n/a')} | {x.get('file_mb', 'n/a')} |")
    return "\n".join(rows)


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--markdown":
        print(markdown(sys.argv[2:]))
    elif len(sys.argv) > 1 and sys.argv[1] == "_ours_api":
        _ours_api(*sys.argv[2:])
    elif len(sys.argv) > 1 and sys.argv[1] == "_ort":
        _ort(*sys.argv[2:])
    else:
        main()
