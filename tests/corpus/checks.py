"""What the corpus tests measure: real ONNX Runtime runs of two models on the same held-out data."""
from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort


def run(model: onnx.ModelProto, feed: dict, exact_qdq: bool = False, optimize: bool = True) -> list[np.ndarray]:
    so = ort.SessionOptions()
    so.log_severity_level = 3
    so.intra_op_num_threads = 2
    if exact_qdq:  # TensorRT-form Q/DQ computed as TensorRT does (see trtcompress.comparison)
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
    if not optimize:  # as written: the float rounding ONNX Runtime's own fusions add is left out
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
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


def ctc_text(scores: np.ndarray) -> list[list[int]]:
    """Greedy CTC decoding of [batch, time, classes] scores: repeats merged, blanks (class 0) dropped."""
    out = []
    for best in scores.argmax(-1):
        keep = np.r_[True, best[1:] != best[:-1]] & (best != 0)
        out.append(best[keep].tolist())
    return out


def _edits(a: list[int], b: list[int]) -> int:
    row = list(range(len(b) + 1))
    for i, x in enumerate(a, 1):
        prev, row[0] = row[0], i
        for j, y in enumerate(b, 1):
            prev, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, prev + (x != y))
    return row[-1]


def ctc_char_accuracy(ref: np.ndarray, got: np.ndarray) -> float:
    """1 - character error rate of ``got``'s decoded text against ``ref``'s (edits over reference characters)."""
    r, g = ctc_text(ref), ctc_text(got)
    return 1.0 - sum(_edits(a, b) for a, b in zip(r, g)) / max(sum(map(len, r)), 1)


def dead_initializers(model: onnx.ModelProto) -> list[str]:
    used = {i for n in model.graph.node for i in n.input} | {o.name for o in model.graph.output}
    return [t.name for t in model.graph.initializer if t.name not in used]


def int8_close(case, ref: np.ndarray, got: np.ndarray) -> dict[str, float]:
    """The case's INT8 measures, each with the bound it must meet: {name: (value, bound)}."""
    if case.metric == "text":
        # PP-OCRv4's recognizer on the rotated page: 0.962 TensorRT form, 0.954 CPU form (2026-12-04)
        return {"text_char_accuracy": (ctc_char_accuracy(ref, got), 0.93)}
    if case.metric == "mask":
        a, b = ref > 0.3, got > 0.3
        return {"text_mask_iou": (float((a & b).sum() / max((a | b).sum(), 1)), 0.8)}
    out = {"cosine": (cosine(ref, got), case.min_cosine)}
    if case.classifier:
        out["top1"] = (top1(ref, got), 0.8)
    return out
