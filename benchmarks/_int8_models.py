"""Shared by the INT8 benchmarks: the three real models, their calibration/eval data, and the
quantized files (one calibration per model, both targets written from it) under benchmarks/_work."""
from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import onnx

from trtcompress import zoo
from trtcompress.zoo.fashion_mnist import dataset_dir

from _cache import keyed
from trtcompress.model_io import load_model, save_model
from trtcompress.stages.quantize import QuantizeConfig, quantize

ROOT = Path(__file__).resolve().parents[1]
WORK = Path(__file__).resolve().parent / "_work"
MODELS = ("efficientnet_lite0", "fashion_cnn", "fashion_vit")


def fp32_path(name: str) -> Path:
    """The FP32 ONNX model (EfficientNet-Lite0 is exported here once, dynamic batch)."""
    if name != "efficientnet_lite0":
        return zoo.onnx_path(name)
    from importlib.metadata import version

    path = keyed(WORK / "efficientnet_lite0.onnx", version("torch"))
    if not path.is_file():
        import torch

        WORK.mkdir(parents=True, exist_ok=True)
        model = zoo.efficientnet_lite0().eval()
        torch.onnx.export(model, (torch.randn(1, 3, 224, 224),), str(path), dynamo=True, input_names=["x"], output_names=["logits"],
                          dynamic_shapes=({0: torch.export.Dim("batch")},), external_data=False, opset_version=18)
    return path


def calib_spec(name: str) -> tuple[str, str | None]:
    """(data spec, preprocess) for calibration: photos' calib split, or 1024 Fashion-MNIST train images."""
    if name == "efficientnet_lite0":
        return "photos:calib", None
    d = keyed(WORK / "fashion_calib", dataset_dir() / "train-images-idx3-ubyte.gz", 1024)
    if not d.is_dir():
        d.mkdir(parents=True)
        x, _ = zoo.fashion_mnist("train", limit=1024)
        for i in range(0, len(x), 128):
            np.savez(d / f"{i // 128:03d}.npz", x=x[i : i + 128])
    return str(d), None


def eval_batches(name: str, photos: str = "eval") -> tuple[list[np.ndarray], np.ndarray | None]:
    """Held-out inputs (disjoint from calibration) and labels where the data has them; ``photos``:
    the photos' split for EfficientNet-Lite0 (eval = tune, or heldout)."""
    if name == "efficientnet_lite0":
        from trtcompress.zoo import PhotoSource

        return [f["x"] for f in PhotoSource(photos, batch_size=32)], None
    x, y = zoo.fashion_mnist("test")
    return [x[i : i + 500] for i in range(0, len(x), 500)], y


def quantized(name: str, target: str, method: str = "entropy", cpu_weights: str = "auto", clip_bounds: bool = True, cpu_layer_rule: str = "auto") -> tuple[Path, dict]:
    """Quantize ``name`` for ``target``; the calibration table is computed once per method and reused."""
    src = fp32_path(name)
    tag = f"{name}-{method}{'' if clip_bounds else '-noclipbound'}"
    data, pre = calib_spec(name)
    # the table is reused only when the model, the data, the options and the code are the same
    data_key = ROOT / "calibration" / "photos" if data.startswith("photos:") else Path(data)
    table = keyed(WORK / f"{tag}.calib.json", src, data, data_key, pre, method, clip_bounds, 32)
    out = WORK / f"{tag}-{target}{'-' + cpu_weights + ('' if cpu_layer_rule == 'auto' else '-' + cpu_layer_rule) if target == 'cpu' else ''}.onnx"
    cfg = QuantizeConfig(method=method, target=target, calib=data, preprocess=pre, batch=32, cpu_weights=cpu_weights, cpu_layer_rule=cpu_layer_rule,
                         table=str(table) if table.is_file() else None, clip_bounds=clip_bounds, progress=False)
    t0 = time.perf_counter()
    result = quantize(load_model(src), cfg)
    seconds = time.perf_counter() - t0
    save_model(result.model, out)
    if not table.is_file():
        table.write_text(result.artifacts["calibration.json"])
        result.report["quantize_seconds_with_calibration"] = round(seconds, 2)
    (out.with_suffix(".report.json")).write_text(json.dumps(result.report, indent=1, default=str))
    return out, result.report


def session(path: Path | onnx.ModelProto, threads: int = 2, optimize: bool = True):
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.log_severity_level = 3
    if not optimize:
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    data = path.SerializeToString() if isinstance(path, onnx.ModelProto) else str(path)
    return ort.InferenceSession(data, so, providers=["CPUExecutionProvider"])
