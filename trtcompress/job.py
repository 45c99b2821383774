"""The main job: (export) -> stages -> compare -> bench -> report, all in one run directory.

``runs/<name>/`` holds ``artifacts/original.onnx`` (the FP32 baseline), ``artifacts/model.onnx``
(the compressed model), stage artifacts, and ``report.json`` with every stage's report, the
comparison, the benchmark and the seed's metrics.
"""
from __future__ import annotations

import dataclasses
import datetime as _dt
import os
import platform
from pathlib import Path
from typing import Any, Callable


from . import __version__
from .benchmark import BenchConfig, bench
from .comparison import CompareConfig, compare
from .config import Config
from .data.base import model_inputs
from .data.preprocess import PreprocessConfig
from .data.readers import ReaderOptions, open_source
from .errors import ConfigError
from .metrics import summary
from .model_io import load_model, save_model
from .pipeline import Pipeline
from .rundir import RunDir
from .runners import RunnerOptions
from .stage import get_stage
from .torch_export.config import ExportConfig

__all__ = ["CompressConfig", "CompressResult", "compress", "stage_config"]

_ONNX_SUFFIXES = (".onnx",)
# stage config fields that, when left empty, take the job's data settings
_SHARED_DATA_FIELDS: dict[str, Callable[["CompressConfig"], Any]] = {
    # random inputs are fine for comparing but would make meaningless scales: never calibrate on
    # them unless the user names them with --calib
    "calib": lambda c: c.calib or (None if c.data.startswith("random") else c.data),
    "preprocess": lambda c: c.preprocess,
}


@dataclasses.dataclass(frozen=True)
class CompressConfig(Config):
    """Everything one ``compress`` run needs. ``stages`` are stage configs, run in order."""

    model: str = ""
    name: str | None = None
    runs_dir: str = "runs"
    stages: tuple[Config, ...] = ()
    export: ExportConfig = ExportConfig()
    data: str = "random:8"  # inputs for compare (and calibration, unless ``calib`` or a stage says otherwise)
    calib: str | None = None  # calibration data for stages that read data; keep it disjoint from ``data``
    preprocess: str | None = None
    batch: int | None = None  # samples per inference; None: as the data stores them (1 for random)
    limit: int | None = None
    compare: CompareConfig = CompareConfig()
    bench: BenchConfig = BenchConfig(iterations=50)
    skip_bench: bool = False
    backend: str = "onnxrt"
    runner: RunnerOptions = RunnerOptions()
    normalize: bool = True  # run the normalize stage first (unless the stages name it) and clean up after the last

    def validate(self) -> None:
        if not self.model:
            raise ConfigError("give a model: an .onnx file or a torch model (pkg.module:factory, file.py:factory, .pt2, TorchScript)")
        if self.batch is not None and self.batch < 1:
            raise ConfigError("batch must be >= 1")
        if self.preprocess:
            PreprocessConfig.parse(self.preprocess)

    @property
    def is_onnx(self) -> bool:
        return Path(self.model).suffix in _ONNX_SUFFIXES

    def to_dict(self) -> dict[str, Any]:
        d = super().to_dict()
        d["stages"] = [{"stage": get_stage(s).name, **s.to_dict()} for s in self.stages]
        return d

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "CompressConfig":
        data = dict(data)
        stages = tuple(stage_config(s.pop("stage"), s) for s in (dict(x) for x in data.pop("stages", [])))
        return dataclasses.replace(super().from_dict(data), stages=stages)


def stage_config(name: str, options: dict[str, Any] | None = None) -> Config:
    """Build a registered stage's config from its name and options."""
    try:
        entry = get_stage(name)
    except KeyError as e:
        raise ConfigError(str(e).strip("'\"")) from None
    return entry.config_type.from_dict(options or {})


@dataclasses.dataclass
class CompressResult:
    run_dir: Path
    model_path: Path
    report: dict[str, Any]


def compress(config: CompressConfig, log: Callable[[str], None] | None = None) -> CompressResult:
    """Run the job; the run directory appears only if it succeeds."""
    log = log or (lambda msg: None)
    with RunDir(config.runs_dir, config.name) as run:
        report: dict[str, Any] = {
            "trtcompress": __version__,
            "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            "host": {"python": platform.python_version(), "machine": platform.machine(), "cpus": os.cpu_count()},
            "config": config.to_dict(),
        }
        original = run.artifact("original.onnx")
        if config.is_onnx:
            log(f"loading {config.model}")
            save_model(load_model(config.model), original)
        else:
            from .torch_export import export

            log(f"exporting {config.model}")
            data = _data_factory(config)
            report["export"] = export(config.model, original, config.export, data).to_dict()

        stages = [_with_shared_data(s, config) for s in _with_normalize(config)]
        model = load_model(original)
        result = Pipeline(stages).run(model, run, log=log)
        report["stages"] = result.report()
        final = result.model
        if config.normalize:
            from .stages.normalize import cleanup

            final, report["cleanup"] = cleanup(final)
        compressed = run.artifact("model.onnx")
        save_model(final, compressed)

        log(f"comparing on {config.data}")
        source = _data_factory(config)(model_inputs(original))
        cmp = compare(original, compressed, source, config.compare, config.backend, config.runner)
        report["compare"] = cmp.to_dict()

        latency = None
        if not config.skip_bench:
            log(f"benchmarking at batch {', '.join(map(str, config.bench.batch_sizes))}")
            b = bench([original, compressed], config.bench, config.backend, config.runner, labels=["original", "compressed"])
            report["bench"] = b.to_dict()
            first = config.bench.batch_sizes[0]
            latency = (b.results[first]["original"]["p50_ms"], b.results[first]["compressed"]["p50_ms"])
        # stages that prune report the weights they zeroed as ``zeros_added``
        pruned = sum(int(s.report.get("zeros_added", 0)) for s in result.stages)
        report["metrics"] = summary(original, compressed, report["compare"], latency, pruned)
        report["passed"] = cmp.passed
        report["artifacts"] = {"original": "artifacts/original.onnx", "model": "artifacts/model.onnx"}
        run.write_report(report)
    return CompressResult(run.final, run.final / "artifacts" / "model.onnx", report)


def _data_factory(config: CompressConfig):
    options = ReaderOptions(
        batch_size=config.batch,
        limit=config.limit,
        preprocess=PreprocessConfig.parse(config.preprocess) if config.preprocess else None,
        shapes={s.name: s.concrete_shape(config.batch or 1) for s in config.export.specs()} or None,
    )
    return lambda inputs: open_source(config.data, inputs, options)


def _with_normalize(config: CompressConfig) -> list[Config]:
    """The stages, with ``normalize`` first unless disabled or already named in the list."""
    from .stages.normalize import NormalizeConfig

    stages = list(config.stages)
    if config.normalize and not any(isinstance(s, NormalizeConfig) for s in stages):
        stages.insert(0, NormalizeConfig())
    return stages


def _with_shared_data(stage: Config, config: CompressConfig) -> Config:
    """Stages that read data (``calib``, ``preprocess`` fields) default to the job's data."""
    names = {f.name for f in dataclasses.fields(stage)}
    shared = {f: get(config) for f, get in _SHARED_DATA_FIELDS.items() if f in names and not getattr(stage, f)}
    changes = {f: v for f, v in shared.items() if v}
    return stage.replace(**changes) if changes else stage
