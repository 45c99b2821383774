"""The post-training techniques beside the peers, in one run: for each model, our quantize stage
with no technique, each technique alone and the techniques combined (TensorRT form and CPU form),
NVIDIA Model Optimizer's INT8 (``modelopt.onnx.quantization``) and ONNX Runtime's
``quantize_static``, all calibrated on the same data and all measured on held-out data only, with
the time each technique costs.

    python benchmarks/ptq_peers.py [--models efficientnet_lite0,minilm,fashion_cnn,fashion_vit]
        [--variants MODEL=none,cle,...] [--targets tensorrt,cpu] [--cpu-layer-rule all]
        [--tools ours,modelopt,ort] [--out benchmarks/_work/ptq_peers.json]

Data (as benchmarks/ptq_accuracy.py; no choice here was made on the held-out part):
- EfficientNet-Lite0 (dynamo export, benchmarks/_int8_models.fp32_path): calibration on the
  photos' ``calib`` split (every view), measured on the ``heldout`` split (552 views): top-1
  agreement with FP32 and logits cosine.
- all-MiniLM-L6-v2 (benchmarks/_minilm.py): calibration on 256 ``calib`` sentences, measured on
  512 ``heldout`` sentences: mean cosine of the sentence embeddings with FP32's.
- Fashion CNN / ViT (zoo): calibration on 1024 training images, measured on the 10 000 test
  images: test accuracy (and FP32's) and top-1 agreement.

Variants are techniques joined by "+" (cle, bias, ada[=ITERATIONS], sq=ALPHA), as ptq_accuracy;
``VARIANT@tensorrt`` runs that variant for one form only (to spend the run's time where it tells).
Our CPU form is written with ``--cpu-layer-rule all`` by default: every supported layer INT8 (the
issue's condition), not the speed rule that keeps depthwise convs float.

Scoring: a TensorRT-form (signed Q/DQ) model at ONNX Runtime's ``basic`` level, the exact Q/DQ
arithmetic TensorRT runs (the default level fuses it into kernels that saturate on CPUs without
VNNI); the peers' models are also scored at the default level ("ORT CPU kernels"), as deployed on
this CPU; our CPU form as deployed (default level).

Time: ours is the quantize stage in this process (calibration, the techniques, writing), with each
technique's own seconds from its report; a peer's is its whole command in a fresh process
(start-up included), run once here. Model Optimizer runs from its own virtual environment
(``benchmarks/_work/modelopt-venv``, see benchmarks/int8_peers.py); both peers use entropy
calibration, per-channel symmetric int8 weights and symmetric int8 activations.
"""
from __future__ import annotations

import argparse
import datetime
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import onnx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))

from _int8_models import calib_spec, fp32_path  # noqa: E402
from ptq_accuracy import eval_data, options  # noqa: E402

from trtcompress.model_io import load_model  # noqa: E402
from trtcompress.sessions import SessionConfig, open_session  # noqa: E402
from trtcompress.stages.quantize import QuantizeConfig, quantize  # noqa: E402

WORK = ROOT / "benchmarks" / "_work" / "ptq_peers"
MODELOPT_PY = ROOT / "benchmarks" / "_work" / "modelopt-venv" / "bin" / "python"
VARIANTS = {
    "efficientnet_lite0": "none,cle,sq=0.75,bias,ada@tensorrt,ada+bias,cle+sq=0.75+ada+bias@tensorrt",
    "minilm": "none,cle,sq=0.75,bias,ada@tensorrt,sq=0.75+bias,sq=0.75+ada+bias",
    "fashion_cnn": "none,cle,sq=0.75,bias,ada,ada+bias,cle+sq=0.75+ada+bias",
    "fashion_vit": "none,cle,sq=0.75,bias,ada,ada+bias,cle+sq=0.75+ada+bias",
}
LAYER_OPS = ("Conv", "ConvTranspose", "Gemm", "MatMul")
INTEGER_OPS = ("ConvInteger", "MatMulInteger", "QLinearConv", "QLinearMatMul", "MatMulIntegerToFloat", "QGemm", "DynamicQuantizeMatMul")


def source(name: str) -> tuple[Path, str, str | None]:
    """(FP32 model, calibration spec for our stage, its preprocess)."""
    if name == "minilm":
        import _minilm

        return _minilm.onnx_path(), str(_minilm.calib_dir()), None
    data, pre = calib_spec(name)
    return Path(fp32_path(name)), data, pre


def calib_arrays(name: str, calib: str) -> dict[str, np.ndarray]:
    """The same calibration samples our stage reads, as one array per model input (for the peers)."""
    if name == "efficientnet_lite0":
        from trtcompress.zoo import PhotoSource

        return {"x": np.concatenate([f["x"] for f in PhotoSource("calib", batch_size=32)])}
    files = sorted(Path(calib).glob("*.npz"))
    keys = np.load(files[0]).files
    return {k: np.concatenate([np.load(f)[k] for f in files]) for k in keys}


def outputs(model: Path | onnx.ModelProto, batches: list, optimization: str) -> np.ndarray:
    """First output per batch (the encoder: its sentence embeddings), 2 threads."""
    data = model.SerializeToString() if isinstance(model, onnx.ModelProto) else str(model)
    s = open_session(data, SessionConfig(threads=2, optimization=optimization))
    if isinstance(batches[0], dict):
        import _minilm

        names = {i.name for i in s.get_inputs()}
        return np.concatenate([_minilm.embed(s.run(None, {k: v for k, v in x.items() if k in names})[0], x["attention_mask"]) for x in batches])
    name = s.get_inputs()[0].name
    return np.concatenate([s.run(None, {name: x})[0] for x in batches])


def score(out: np.ndarray, ref: np.ndarray, labels: np.ndarray | None) -> dict:
    a, b = out.astype(np.float64), ref.astype(np.float64)
    r = {"top1_agreement": round(100 * float(np.mean(a.argmax(1) == b.argmax(1))), 2),
         "cosine": round(float(np.mean((a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1) + 1e-12))), 5)}
    if labels is not None:
        r["accuracy"] = round(100 * float(np.mean(a.argmax(1) == labels)), 2)
    return r


def float_layers(model: onnx.ModelProto) -> tuple[list[str], int]:
    """(the Conv/Gemm/MatMul layers that still compute in float, all such layers of the FP32
    model's kinds): a float layer is one whose data inputs are not all from DequantizeLinear (the
    CPU form's integer layers are INTEGER_OPS, not these op types)."""
    producer = {o: n.op_type for n in model.graph.node for o in n.output}
    floats = []
    for n in model.graph.node:
        if n.op_type in LAYER_OPS:
            data = n.input[:2]
            if not all(producer.get(x) == "DequantizeLinear" for x in data):
                floats.append(n.name or n.output[0])
    return floats, sum(n.op_type in LAYER_OPS + INTEGER_OPS for n in model.graph.node)


# -- the peers, each a whole command in a fresh process ---------------------------------------------


def _ort_quantize(model: str, calib: str, out: str, method: str = "Entropy") -> None:
    """ONNX Runtime's quantize_static: entropy (2048 bins, 128 quantized, as int8_peers), QDQ,
    symmetric int8, per-channel; every input of the calibration npz fed. ``method``: a
    CalibrationMethod name (its entropy histograms fail on an attention mask's -inf: MinMax then)."""
    from onnxruntime.quantization import CalibrationDataReader, CalibrationMethod, QuantFormat, QuantType, quantize_static

    from int8_peers import ort_entropy_bins

    ort_entropy_bins()
    data = np.load(calib)
    x = {k: data[k] for k in data.files}
    n = len(next(iter(x.values())))
    bs = max(b for b in range(1, 33) if n % b == 0)  # equal batches: its histogram collector stacks them

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.it = iter([{k: v[i : i + bs] for k, v in x.items()} for i in range(0, n, bs)])

        def get_next(self):
            return next(self.it, None)

    quantize_static(model, out, Reader(), quant_format=QuantFormat.QDQ, per_channel=True, activation_type=QuantType.QInt8,
                    weight_type=QuantType.QInt8, calibrate_method=CalibrationMethod[method],
                    extra_options={"ActivationSymmetric": True, "WeightSymmetric": True, "CalibTensorRangeSymmetric": True,
                                   "CalibMaxIntermediateOutputs": 4})


def peer_command(tool: str, fp32: Path, calib_npz: Path, out: Path, method: str = "Entropy") -> list[str]:
    if tool == "ort":
        return [sys.executable, __file__, "_ort", str(fp32), str(calib_npz), str(out), method]
    src = out.parent / f"{out.stem}_input.onnx"
    shutil.copy(fp32, src)  # Model Optimizer writes intermediate files beside its input
    return [str(MODELOPT_PY), "-m", "modelopt.onnx.quantization", "--onnx_path", str(src), "--quantize_mode", "int8",
            "--calibration_method", "entropy", "--calibration_data_path", str(calib_npz), "--calibration_eps", "cpu",
            "--output_path", str(out)]


# -- one model --------------------------------------------------------------------------------------


def run_model(name: str, variants: list[str], targets: list[str], tools: list[str], layer_rule: str) -> dict:
    fp32, calib, pre = source(name)
    d = WORK / name
    d.mkdir(parents=True, exist_ok=True)
    data = eval_data(name, ["heldout"])
    batches, labels = data["heldout"]
    ref = outputs(fp32, batches, "all")
    model = load_model(fp32)
    res: dict = {"fp32": {"samples": int(len(ref))}, "rows": []}
    if labels is not None:
        res["fp32"]["accuracy"] = round(100 * float(np.mean(ref.argmax(1) == labels)), 2)
    res["fp32"]["layers"] = float_layers(model)[1]
    for spec in variants:
        variant, _, only = spec.partition("@")  # "ada@tensorrt": that form only
        for target in (only.split("/") if only else targets):
            cfg = QuantizeConfig(calib=calib, preprocess=pre, batch=32, target=target, progress=False,
                                 cpu_layer_rule=layer_rule if target == "cpu" else "auto", **options(variant))
            t0 = time.perf_counter()
            r = quantize(model, cfg)
            seconds = time.perf_counter() - t0
            rep = r.report
            out = outputs(r.model, batches, "basic" if target == "tensorrt" else "all")
            floats, total = float_layers(r.model)
            row = {"tool": "ours", "variant": variant, "target": target, "seconds": round(seconds, 1),
                   "calibration_seconds": rep.get("calibration_seconds"),
                   **{f"{k}_seconds": rep[k]["seconds"] for k in ("cle", "smoothquant", "adaround", "bias_correction") if k in rep},
                   "float_layers": floats, "layers": total, **score(out, ref, labels)}
            if "adaround" in rep:
                kept = [x for x in rep["adaround"]["layers"] if "kept" in x]
                row["adaround_layers"] = len(rep["adaround"]["layers"]) - len(kept)
                row["adaround_kept_nearest"] = len(kept)
                row["adaround_skipped"] = len(rep["adaround"].get("skipped", {}))
            res["rows"].append(row)
            print(json.dumps(row), flush=True)
    peers = [t for t in tools if t != "ours"]
    if peers:
        npz = d / "calib_all.npz"
        np.savez(npz, **calib_arrays(name, calib))
        # ONNX Runtime's entropy histograms fail on -inf (an attention mask): its MinMax then
        runs = [(t, m) for t in peers for m in (("Entropy", "MinMax") if t == "ort" else ("entropy",))]
        done = set()
        for tool, method in runs:
            if tool in done:
                continue
            out_path = d / f"int8_{tool}.onnx"
            out_path.unlink(missing_ok=True)
            cmd = peer_command(tool, fp32, npz, out_path, method)
            t0 = time.perf_counter()
            with open(d / f"{tool}-{method}.log", "w") as f:
                rc = subprocess.run(cmd, stdout=f, stderr=subprocess.STDOUT, cwd=ROOT).returncode
            row = {"tool": tool, "variant": method.lower(), "target": "tensorrt (Q/DQ)", "seconds": round(time.perf_counter() - t0, 1), "rc": rc}
            if rc == 0 and out_path.exists():
                q = load_model(out_path)
                row["float_layers"], row["layers"] = float_layers(q)
                row.update(score(outputs(out_path, batches, "basic"), ref, labels))
                row["ort_cpu_kernels"] = score(outputs(out_path, batches, "all"), ref, labels)
                done.add(tool)
            else:
                row["error"] = f"failed, see {d / f'{tool}-{method}.log'}"
            res["rows"].append(row)
            print(json.dumps(row), flush=True)
    return res


def markdown(results: dict) -> str:
    lines = []
    for name, res in results["models"].items():
        f = res["fp32"]
        enc = name == "minilm"
        head = "embedding cosine" if enc else "top-1 agreement / logits cosine"
        acc = "accuracy (FP32 {}%) | ".format(f["accuracy"]) if "accuracy" in f else ""
        lines += [f"\n{name} ({f['samples']} held-out samples, {f['layers']} Conv/Gemm/MatMul layers)\n",
                  f"| tool | technique | form | {acc}{head} | float layers | seconds (whole) | CLE / SmoothQuant / AdaRound / bias correction s |",
                  "|---|---|---|" + ("---|" if acc else "") + "---|---|---|---|"]
        for r in res["rows"]:
            if "error" in r:
                lines.append(f"| {r['tool']} | {r['variant']} | {r['target']} | " + ("| " if acc else "") + f"failed (exit status {r['rc']}) | | {r['seconds']} | |")
                continue
            fid = f"{r['cosine']:.4f}" if enc else f"{r['top1_agreement']}% / {r['cosine']:.4f}"
            a = f"{r['accuracy']}% | " if acc else ""
            if "ort_cpu_kernels" in r:
                c = r["ort_cpu_kernels"]
                fid += f" (ORT CPU kernels: {c['cosine']:.4f})" if enc else f" (ORT CPU kernels: {c['top1_agreement']}%)"
                if acc:
                    a = f"{r['accuracy']}% ({c['accuracy']}%) | "
            tech = " / ".join(str(r.get(f"{k}_seconds", "-")) for k in ("cle", "smoothquant", "adaround", "bias_correction"))
            lines.append(f"| {r['tool']} | {r['variant']} | {r['target']} | {a}{fid} | {len(r['float_layers'])} of {r['layers']} | {r['seconds']} | {tech if r['tool'] == 'ours' else ''} |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--models", default="fashion_cnn,fashion_vit,minilm,efficientnet_lite0")
    ap.add_argument("--variants", action="append", default=[], help="MODEL=v1,v2,... (default: VARIANTS)")
    ap.add_argument("--targets", default="tensorrt,cpu")
    ap.add_argument("--tools", default="ours,modelopt,ort")
    ap.add_argument("--cpu-layer-rule", default="all")
    ap.add_argument("--out", default=str(WORK / "ptq_peers.json"))
    args = ap.parse_args()
    tools = args.tools.split(",")
    if "modelopt" in tools and not MODELOPT_PY.exists():
        sys.exit(f"Model Optimizer venv missing: {MODELOPT_PY} (see benchmarks/int8_peers.py)")
    chosen = dict(VARIANTS, **dict(v.split("=", 1) for v in args.variants))
    results = {"date": f"{datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC", "models": {}}
    print(f"# {results['date']}", flush=True)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    for name in args.models.split(","):
        variants = chosen[name].split(",") if "ours" in tools else []
        results["models"][name] = run_model(name, variants, args.targets.split(","), tools, args.cpu_layer_rule)
        out.write_text(json.dumps(results, indent=1))  # after each model: a late failure keeps the rest
    results["finished"] = f"{datetime.datetime.now(datetime.timezone.utc):%H:%M} UTC"
    out.write_text(json.dumps(results, indent=1))
    print(markdown(results))


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "_ort":
        _ort_quantize(*sys.argv[2:])
    elif len(sys.argv) > 2 and sys.argv[1] == "--markdown":
        print(markdown(json.loads(Path(sys.argv[2]).read_text())))
    else:
        main()
