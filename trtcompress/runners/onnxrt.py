"""ONNX Runtime backend (CPU; the CUDA provider when asked for and present)."""
from __future__ import annotations

import onnxruntime as ort

from . import _polygraphy  # noqa: F401  (before Polygraphy logs anything)
from polygraphy.backend.onnxrt import OnnxrtRunner

from ..errors import ConfigError, ModelError
from ..model_io import require_model_file
from .registry import RunnerOptions, register_backend

_PROVIDERS = {"cpu": "CPUExecutionProvider", "cuda": "CUDAExecutionProvider", "trt": "TensorrtExecutionProvider"}
_OPT = {
    "disable": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
    "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
    "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
    "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
}


def session_options(options: RunnerOptions) -> ort.SessionOptions:
    so = ort.SessionOptions()
    so.graph_optimization_level = _OPT[options.optimization]
    if options.threads:
        so.intra_op_num_threads = options.threads
        so.inter_op_num_threads = 1
    so.log_severity_level = 3
    return so


def providers(options: RunnerOptions) -> list[str]:
    available = ort.get_available_providers()
    chosen = []
    for p in options.providers:
        full = _PROVIDERS.get(p.lower(), p)
        if full not in available:
            raise ConfigError(f"ONNX Runtime provider {full} is not available here (available: {', '.join(available)}); use --providers cpu")
        chosen.append(full)
    return chosen


def make_session(model_path: str, options: RunnerOptions) -> ort.InferenceSession:
    try:
        return ort.InferenceSession(model_path, sess_options=session_options(options), providers=providers(options))
    except ConfigError:
        raise
    except Exception as e:
        msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ModelError(f"ONNX Runtime cannot load {model_path}: {msg}") from e


@register_backend("onnxrt")
def onnxrt_runner(model_path: str, options: RunnerOptions) -> OnnxrtRunner:
    require_model_file(model_path)
    return OnnxrtRunner(lambda: make_session(model_path, options), name=f"onnxrt:{model_path}")
