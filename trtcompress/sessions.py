"""The one place ONNX Runtime sessions are made, so the same options give the same session.

Every session in trtcompress (the onnxrt runner, calibration, sensitivity, the export check, the
zoo's evaluation, the normalize check) comes from :func:`open_session` with a
:class:`SessionConfig`: thread counts, graph optimisation level, providers and logging are set
here only. A model is a path, serialized bytes or a ``ModelProto``; a ``ModelProto`` over the
protobuf limit is run through its weightless copy (:mod:`trtcompress.weightless`), its large
weights fed with every run. A load failure is one :class:`~trtcompress.errors.ModelError` line;
onnxruntime missing is the usual :class:`~trtcompress.errors.MissingDependencyError`.
"""
from __future__ import annotations

import dataclasses
import os
from typing import TYPE_CHECKING, Any, Sequence, Union

from ._optional import require
from .config import Config
from .errors import ConfigError, ModelError, UserError

__all__ = ["SessionConfig", "open_session", "create_session", "session_options", "resolve_providers", "OPTIMIZATION_LEVELS"]

_PROVIDERS = {"cpu": "CPUExecutionProvider", "cuda": "CUDAExecutionProvider", "trt": "TensorrtExecutionProvider"}
# option name -> onnxruntime.GraphOptimizationLevel member (looked up when a session is made:
# this module imports no onnxruntime)
OPTIMIZATION_LEVELS = {"disable": "ORT_DISABLE_ALL", "basic": "ORT_ENABLE_BASIC", "extended": "ORT_ENABLE_EXTENDED", "all": "ORT_ENABLE_ALL"}

if TYPE_CHECKING:
    import onnx

Model = Union[str, "os.PathLike[str]", bytes, "onnx.ModelProto"]


@dataclasses.dataclass(frozen=True)
class SessionConfig(Config):
    """How a session runs. ``threads``: intra-op threads (0: ONNX Runtime's choice; inter-op
    threads are then 1: sessions run sequentially). ``providers``: short (cpu, cuda, trt) or full
    names, in order. ``optimization``: graph optimisation level (``all`` is ONNX Runtime's
    default). ``spinning``: off where numpy work shares the cores between runs (calibration
    counting, sensitivity), so idle workers do not take them."""

    threads: int = 0
    providers: tuple[str, ...] = ("cpu",)
    optimization: str = "all"
    spinning: bool = True

    def validate(self) -> None:
        if self.threads < 0:
            raise ConfigError(f"threads must be >= 0, got {self.threads}")
        if self.optimization not in OPTIMIZATION_LEVELS:
            raise ConfigError(f"optimization must be disable, basic, extended or all, got {self.optimization!r}")
        if not self.providers:
            raise ConfigError("give at least one ONNX Runtime provider, e.g. cpu")


def _ort(purpose: str = "running ONNX models"):
    return require("onnxruntime", purpose)


def session_options(config: SessionConfig) -> Any:
    """The ``onnxruntime.SessionOptions`` for ``config``."""
    ort = _ort()
    so = ort.SessionOptions()
    so.graph_optimization_level = getattr(ort.GraphOptimizationLevel, OPTIMIZATION_LEVELS[config.optimization])
    if config.threads:
        so.intra_op_num_threads = config.threads
        so.inter_op_num_threads = 1
    so.log_severity_level = 3  # errors only: ONNX Runtime's warnings reach the user as noise
    if not config.spinning:
        so.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return so


def resolve_providers(names: Sequence[str]) -> list[str]:
    """Full provider names for ``names``; a provider this ONNX Runtime lacks is a ConfigError."""
    available = _ort().get_available_providers()
    chosen = []
    for p in names:
        full = _PROVIDERS.get(p.lower(), p)
        if full not in available:
            raise ConfigError(f"ONNX Runtime provider {full} is not available here (available: {', '.join(available)}); use --providers cpu")
        chosen.append(full)
    return chosen


def open_session(model: Model, config: SessionConfig | None = None, *, outputs: Sequence[str] = (), name: str | None = None, purpose: str = "running ONNX models") -> Any:
    """An ONNX Runtime session on ``model`` configured by ``config`` (default: ``SessionConfig()``),
    with the graph tensors ``outputs`` as extra outputs (a ``ModelProto`` only; it is not changed).
    ``name`` names the model in a load error (default: its path, or "the model")."""
    config = config or SessionConfig()
    _ort(purpose)
    return create_session(model, session_options(config), resolve_providers(config.providers), outputs=outputs, name=name)


def create_session(model: Model, sess_options: Any, providers: Sequence[str], *, outputs: Sequence[str] = (), name: str | None = None) -> Any:
    """:func:`open_session` for a caller holding its own ``onnxruntime.SessionOptions`` and full
    provider names (a test that sets its own options); everything else gives a SessionConfig."""
    import onnx

    ort = _ort()
    weights: dict = {}
    if isinstance(model, onnx.ModelProto):
        from .weightless import fed_copy

        model, weights = fed_copy(model, outputs)
        source: Any = model.SerializeToString()
        name = name or "the model"
    elif outputs:
        raise ValueError("extra outputs are added to an in-memory ModelProto, not to a file or serialized model")
    elif isinstance(model, bytes):
        source, name = model, name or "the model"
    else:
        source, name = os.fspath(model), name or os.fspath(model)
    try:
        sess = ort.InferenceSession(source, sess_options, providers=list(providers))
    except UserError:
        raise
    except Exception as e:
        msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ModelError(f"ONNX Runtime cannot load {name}: {msg}") from e
    if weights:
        from .weightless import WeightFedSession

        return WeightFedSession(sess, weights)
    return sess
