"""``build_engine``: ONNX -> TensorRT engine through Polygraphy's loaders, with a sidecar JSON.

Steps: read the model's facts, make the plan for the installed TensorRT (``plan.py``), convert
the ONNX to float16 when a strongly typed ``--fp16`` build asks for it (``fp16.py``; a refittable
build first decodes shared weights, ``weights.py``, and records their digest in the sidecar), build with
the loaders of ``loaders.py`` while capturing TensorRT's log (its sparsity lines), inspect the
engine (per-layer precision and tactic), then write the engine and ``<engine>.json``
atomically. :func:`plan_build` is the same without TensorRT (``build --dry-run``).
"""
from __future__ import annotations

import contextlib
import dataclasses
import io
import logging
import os
import tempfile
from pathlib import Path
from typing import Any, Callable

from ..errors import ConfigError, ModelError
from ..fileio import atomic_path, write_json
from ..progress import task
from .config import BuildConfig
from .plan import BuildPlan, make_plan, model_facts
from .plugins import load_plugins, resolve_plugins, split_plugins
from .sidecar import file_sha256, make_sidecar, sidecar_path
from .version import TrtVersion, installed_version, parse_version

__all__ = ["BuildResult", "build_engine", "plan_build", "parsed_model", "DRY_RUN_VERSIONS"]

log = logging.getLogger(__name__)
# what --dry-run shows when no version is given: JetPack 6.0, JetPack 6.1/6.2, JetPack 7, 11.x
DRY_RUN_VERSIONS = ("8.6.1", "10.3.0", "10.13.0", "11.0.0")


@dataclasses.dataclass
class BuildResult:
    engine_path: Path
    sidecar_path: Path
    plan: BuildPlan
    tensorrt_version: str
    gpu: dict[str, str]
    report: dict[str, Any]  # layers (precision, tactic), sparsity (eligible, picked), warnings
    seconds: float

    @property
    def warnings(self) -> list[str]:
        return list(self.report.get("warnings", [])) + list(self.plan.notes)

    def to_dict(self) -> dict[str, Any]:
        return {
            "engine": str(self.engine_path),
            "sidecar": str(self.sidecar_path),
            "tensorrt_version": self.tensorrt_version,
            "gpu": self.gpu,
            "plan": self.plan.to_dict(),
            "report": self.report,
            "seconds": self.seconds,
        }


def plan_build(onnx_path: str | os.PathLike, config: BuildConfig, version: str | TrtVersion) -> BuildPlan:
    """The plan for ``version`` (no TensorRT needed)."""
    from ..model_io import load_model

    model = load_model(onnx_path, check=False)  # with external data: the 2:4 analysis reads the weights
    config = config.replace(plugins=resolve_plugins(config.plugins))
    return make_plan(model_facts(model), config, parse_version(version))


def parsed_model(plan: BuildPlan, model):
    """The model the build parses when it is not the file given (``trtexec.parsed_onnx_path`` names
    it): shared weights decoded for a refittable build (``weights.py``), float16 for a strongly
    typed ``--fp16`` build; None when the build parses the model as it is."""
    if plan.refit != "off":
        from .weights import engine_weights_model

        return engine_weights_model(model, plan.convert_fp16)
    if plan.convert_fp16:
        from .fp16 import convert_to_fp16

        return convert_to_fp16(model).model
    return None


def _target(config: BuildConfig) -> TrtVersion:
    here = installed_version()
    if config.target_version is not None:
        want = parse_version(config.target_version)
        if (want.major, want.minor) != (here.major, here.minor):
            raise ConfigError(
                f"--target-version {config.target_version} but TensorRT {here} is installed; an engine runs only on the "
                f"TensorRT that built it: build on the target (or use --dry-run for the trtexec line)"
            )
    return here


@contextlib.contextmanager
def _captured_trt_log():
    """TensorRT's builder messages, INFO and up, into a list (Polygraphy forwards TensorRT's
    INFO as its VERBOSE); Polygraphy's own console output is kept off stdout meanwhile. A log
    file the user gave Polygraphy keeps receiving everything; we read what was appended."""
    from polygraphy.logger import G_LOGGER

    lines: list[str] = []
    old = G_LOGGER.log_file
    with tempfile.TemporaryDirectory() as d:
        path = old or os.path.join(d, "trt.log")
        offset = os.path.getsize(path) if old and os.path.exists(path) else 0
        if not old:
            G_LOGGER.log_file = path
        try:
            with G_LOGGER.verbosity(G_LOGGER.VERBOSE), contextlib.redirect_stdout(io.StringIO()):
                yield lines
        finally:
            if not old:
                G_LOGGER.log_file = None
            with open(path, errors="replace") as f:
                f.seek(offset)
                lines.extend(f.read().splitlines())


def run_with_trt_log(loader: Callable[[], Any], failure: str) -> tuple[Any, list[str]]:
    """``loader()`` with TensorRT's log captured; a failure raises :class:`ModelError` with the
    first error TensorRT logged (the cause; Polygraphy's own message comes after it)."""
    error: Exception | None = None
    result = None
    with _captured_trt_log() as lines:
        try:
            result = loader()
        except Exception as e:  # Polygraphy raises PolygraphyException; TensorRT's reason is in the log
            error = e
    if error is not None:
        errors = [l for l in lines if l.startswith(("[E]", "[!]"))] or [f"{type(error).__name__}: {error}"]
        raise ModelError(f"{failure}: {errors[0][3:].strip() if errors[0].startswith('[') else errors[0]}") from error
    return result, lines


def _inspect(engine) -> str | None:
    import tensorrt as trt

    try:
        inspector = engine.create_engine_inspector()
        return inspector.get_engine_information(trt.LayerInformationFormat.JSON)
    except AttributeError:
        return None


def build_engine(onnx_path: str | os.PathLike, engine_path: str | os.PathLike, config: BuildConfig | None = None) -> BuildResult:
    """Build ``onnx_path`` into ``engine_path`` for the TensorRT and GPU of this machine."""
    import time

    from polygraphy.backend.trt import SaveEngine

    from ..model_io import load_model, require_model_file
    from .gpu import device_info
    from .loaders import build_loaders
    from .report import engine_report
    from .trtexec import parsed_onnx_path

    config = config or BuildConfig()
    onnx_path = require_model_file(onnx_path)
    version = _target(config)
    gpu = device_info()
    model = load_model(onnx_path, check=False)
    config = config.replace(plugins=resolve_plugins(config.plugins))
    plan = make_plan(model_facts(model), config, version)
    for note in plan.notes:
        log.warning(note)
    engine_path = Path(engine_path)
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(dir=engine_path.parent if engine_path.parent.exists() else None) as work:
        source = str(onnx_path)
        parsed = parsed_model(plan, model)
        if parsed is not None:
            from ..model_io import save_model

            source = parsed_onnx_path(plan, os.path.join(work, "model.onnx"))
            save_model(parsed, source)
        _, python_plugins = split_plugins(plan.plugins)
        load_plugins(python_plugins)
        cache_out = plan.timing_cache
        loaders = build_loaders(plan, source, save_timing_cache=cache_out)
        with task(f"building the TensorRT {version} engine {engine_path.name}"):
            engine, trt_log = run_with_trt_log(loaders.engine, f"TensorRT {version} could not build {onnx_path}")
        report = engine_report(_inspect(engine), trt_log, plan.precisions, plan.sparse_weights)
        for w in report["warnings"]:
            log.warning("%s: %s", engine_path.name, w)
        with atomic_path(engine_path) as tmp:
            SaveEngine(engine, path=str(tmp))()
    side = sidecar_path(engine_path)
    data = make_sidecar(plan.to_dict(), str(version), gpu, onnx_path, file_sha256(onnx_path), report)
    if plan.refit != "off":  # what the refit must match: the dense form parsed (trt/weights.py)
        from .weights import refit_record

        data["refit"] = {**refit_record(parsed, plan.refit, plan.strip_weights, plan.convert_fp16), "engine_bytes": engine_path.stat().st_size}
    write_json(side, data)
    return BuildResult(engine_path, side, plan, str(version), {"name": gpu.name, "compute_capability": gpu.compute_capability}, report, time.perf_counter() - start)
