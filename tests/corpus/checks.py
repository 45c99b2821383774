"""What the corpus tests measure: real ONNX Runtime runs of two models on the same held-out data."""
from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort


def run(model: onnx.ModelProto, feed: dict, exact_qdq: bool = False) -> list[np.ndarray]:
    so = ort.SessionOptions()
    so.log_severity_level = 3
    so.intra_op_num_threads = 2
    if exact_qdq:  # TensorRT-form Q/DQ computed as TensorRT does (see trtcompress.comparison)
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
    return ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"]).run(None, feed)


def relative_error(ref: np.ndarray, got: np.ndarray) -> float:
    """Largest difference over the largest reference magnitude (at least 0.01: a text detector's
    map is near 0 on most photos, where float rounding alone would look large)."""
    return float(np.max(np.abs(ref.astype(np.float64) - got)) / max(float(np.max(np.abs(ref))), 1e-2))


def cosine(ref: np.ndarray, got: np.ndarray) -> float:
    """Mean cosine similarity per sample."""
    a, b = ref.reshape(len(ref), -1).astype(np.float64), got.reshape(len(got), -1).astype(np.float64)
    return float(np.mean(np.sum(a * b, 1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1) + 1e-30)))


def top1(ref: np.ndarray, got: np.ndarray) -> float:
    return float(np.mean(ref.reshape(len(ref), -1).argmax(1) == got.reshape(len(got), -1).argmax(1)))


def dead_initializers(model: onnx.ModelProto) -> list[str]:
    used = {i for n in model.graph.node for i in n.input} | {o.name for o in model.graph.output}
    return [t.name for t in model.graph.initializer if t.name not in used]


def int8_close(case, ref: np.ndarray, got: np.ndarray) -> dict[str, float]:
    """The case's INT8 measures, each with the bound it must meet: {name: (value, bound)}."""
    if case.metric == "sequence":
        return {"position_argmax_agreement": (float(np.mean(ref.argmax(-1) == got.argmax(-1))), 0.9)}
    if case.metric == "mask":
        a, b = ref > 0.3, got > 0.3
        return {"text_mask_iou": (float((a & b).sum() / max((a | b).sum(), 1)), 0.8)}
    out = {"cosine": (cosine(ref, got), case.min_cosine)}
    if case.classifier:
        out["top1"] = (top1(ref, got), 0.8)
    return out
