"""The main job: (export) -> stages -> compare -> bench -> report, all in one run directory.

``runs/<name>/`` holds ``artifacts/original.onnx`` (the FP32 baseline), ``artifacts/model.onnx``
(the compressed model), stage artifacts, and ``report.json`` with every stage's report, the
comparison, the benchmark and the seed's metrics (schema: ``trtcompress/report/schema.json``), and
``report.html``, the same as a self-contained page with plots.
"""
from __future__ import annotations

import contextlib
import dataclasses
import datetime as _dt
import os
import platform
import tempfile
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence


from . import __version__
from ._optional import available
from .benchmark import BenchConfig, bench
from .comparison import CompareConfig, compare
from .config import Config
from .data.base import model_inputs
from .data.options import DataOptions, open_data
from .data.preprocess import IMAGE_SUFFIXES
from .errors import ConfigError
from .metrics import summary
from .model_io import load_model, save_model
from .pipeline import Pipeline
from .recipe import write_run_recipe
from .report import SCHEMA_VERSION as REPORT_SCHEMA_VERSION, versions, write_html
from .rundir import RunDir
from .runners import RunnerOptions
from .stage import get_stage
from .stage_cache import stage_cache
from .torch_export.config import ExportConfig
from .trt.version import TrtVersion, parse_version

__all__ = ["CompressConfig", "CompressResult", "compress", "stage_config", "reads_calibration_data"]

_ONNX_SUFFIXES = (".onnx",)
# stage config fields that, when left empty, take the job's data settings. Calibration data is
# never the evaluation data unless the user says so (calib_from_data): a model calibrated on what
# it is judged on looks better than it is.
_SHARED_DATA_FIELDS: dict[str, Callable[["CompressConfig"], Any]] = {
    "calib": lambda c: c.calib or (c.data if c.calib_from_data == "same" else None),
    "preprocess": lambda c: c.preprocess,
    "inputs": lambda c: tuple(c.export.inputs),  # shapes for dynamic dimensions (--input)
    "ray": lambda c: c.ray,  # calibrate with Ray tasks on this cluster (trtcompress.distributed)
    "train": lambda c: tuple(filter(None, [_SHARED_DATA_FIELDS["calib"](c)])),  # finetune trains on the calibration data
    "torch_model": lambda c: "" if c.is_onnx else c.model,  # finetune retrains the torch model
    "exporter": lambda c: c.export.exporter,  # and exports it as the job did
    # quantize --qat checkpoints beside the stage cache: an interrupted run resumes mid-training
    "qat_checkpoint": lambda c: str(Path(c.runs_dir) / ".cache" / "qat-checkpoints") if c.cache else None,
}
CALIB_FROM_DATA = ("", "split", "same")
# The job's benchmark: 50 iterations a model, within this many seconds per batch size for both
# models, warm-up included. A small model runs all 50 (EfficientNet-Lite0 at batch 1: about 1 s);
# a VGG-class detector at 320x320, whose TensorRT-form model takes seconds a run on ONNX Runtime,
# ran 65 runs a model (15 of them warm-up) and took minutes, longer than its compression. Fewer,
# longer runs still give a median: one per round at the least, in interleaved rounds. 15 s, not
# 30: with quantize at 21 s on that detector (quiet machine), a 30 s bench and a 12 s compare were
# two thirds of the job.
BENCH_BUDGET = 15.0
_SPLIT_SUFFIXES = (".npz", ".npy") + IMAGE_SUFFIXES


@dataclasses.dataclass(frozen=True)
class CompressConfig(Config):
    """Everything one ``compress`` run needs. ``stages`` are stage configs, run in order."""

    model: str = ""
    name: str | None = None
    runs_dir: str = "runs"
    overwrite: bool = False  # replace an earlier run of the same name (never anything else)
    stages: tuple[Config, ...] = ()
    export: ExportConfig = ExportConfig()
    data: str = "random:8"  # inputs for compare (and calibration, unless ``calib`` or a stage says otherwise)
    calib: str | None = None  # calibration data for stages that read data; keep it disjoint from ``data``
    # without ``calib``: "" refuses a stage that reads data; "split" splits ``data`` (a directory)
    # by file into disjoint halves (even positions in sorted order calibrate, odd ones evaluate);
    # "same" calibrates on the evaluation data itself (the report says so)
    calib_from_data: str = ""
    preprocess: str | None = None
    batch: int | None = None  # samples per inference; None: as the data stores them (1 for random)
    limit: int | None = None
    compare: CompareConfig = CompareConfig()
    bench: BenchConfig = BenchConfig(iterations=50, budget=BENCH_BUDGET)
    skip_bench: bool = False
    backend: str = "onnxrt"
    runner: RunnerOptions = RunnerOptions()
    # write what this TensorRT takes (opset, Q/DQ placement, rank multiples), then build its engine
    target_trt: str | None = None
    calibration_cache: bool = False  # with target_trt <= 10: also the TensorRT calibration cache
    normalize: bool = True  # run the normalize stage first (unless the stages name it) and clean up after the last
    # every finished stage is stored in <runs_dir>/.cache (trtcompress.stage_cache); ``resume``
    # reuses the stored stages whose input, config and data are unchanged (and replaces an earlier
    # run of the same name): an interrupted run continues where it stopped
    cache: bool = True
    resume: bool = False
    ray: str | None = None  # calibrate with Ray tasks on this cluster address ("local": ray.init()'s choice)

    def validate(self) -> None:
        if not self.model:
            raise ConfigError("give a model: an .onnx file or a torch model (pkg.module:factory, file.py:factory, .pt2, TorchScript)")
        if self.batch is not None and self.batch < 1:
            raise ConfigError("batch must be >= 1")
        self.data_options()  # refuses a bad --preprocess or --input now
        if self.calib_from_data not in CALIB_FROM_DATA:
            raise ConfigError(f"calib_from_data must be split or same (or empty), got {self.calib_from_data!r}")
        if self.calib and self.calib_from_data:
            raise ConfigError("give either --calib or --calib-from-data, not both")
        if self.target_trt:
            version = parse_version(self.target_trt)
            if self.calibration_cache:
                version.cache_version_number  # TensorRT 11 has none: the one-line refusal
        elif self.calibration_cache:
            raise ConfigError("a calibration cache is written for one TensorRT version: give --target-trt VERSION (8.5 to 10.x)")
        if self.resume and not self.cache:
            raise ConfigError("--resume reuses the stage cache: drop --no-cache")
        Pipeline(self.stages)  # refuses an order of stages that breaks a stage's contract
        if self.ray is not None:
            from .distributed import check_ray

            check_ray()
        _require_torch_model(self)

    def data_options(self) -> DataOptions:
        """How ``data`` is read (the export's ``inputs`` give the shapes of dynamic dimensions)."""
        return DataOptions(batch=self.batch, limit=self.limit, preprocess=self.preprocess, inputs=self.export.inputs)

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


def compress(config: CompressConfig, log: Callable[[str], None] | None = None, command: Sequence[str] | None = None) -> CompressResult:
    """Run the job in ``runs/<name>/`` (see :func:`_kept_on_failure` for a run that fails);
    ``command``: the command line that started it, for the report (None from Python)."""
    log = log or (lambda msg: None)
    _require_calibration(config)
    run = RunDir(config.runs_dir, config.name, overwrite=config.overwrite or config.resume)
    config = config.replace(name=run.name)  # the recipe and report name the run, also when the name was generated
    report: dict[str, Any] = {}
    with _kept_on_failure(run, report, log) as progress, tempfile.TemporaryDirectory(prefix="trtcompress-split-") as split_dir:
        progress.phase = "load" if config.is_onnx else "export"
        report.update({
            "schema_version": REPORT_SCHEMA_VERSION,
            "trtcompress": __version__,
            "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            "host": {"python": platform.python_version(), "machine": platform.machine(), "cpus": os.cpu_count()},
            "versions": versions(),
            "command": list(command) if command is not None else None,
            "config": config.to_dict(),
        })
        report["recipe"] = write_run_recipe(run, config)
        config, report["data_split"] = _split_data(config, Path(split_dir))
        target = parse_version(config.target_trt) if config.target_trt else None
        original = run.artifact("original.onnx")
        if config.is_onnx:
            log(f"loading {config.model}")
            model = load_model(config.model)
            if target is not None:
                from .trt.opset import fit_opset

                fit = fit_opset(model, target)
                model = fit.model
                report["tensorrt"] = {"version": str(target), "opset": fit.note(target)}
            save_model(model, original)
        else:
            from .torch_export import export

            data = _data_factory(config)
            export_config = config.export
            if target is not None:
                from .trt.opset import export_opset

                export_config = export_config.replace(opset=export_opset(None, export_config.opset, target))
                report["tensorrt"] = {"version": str(target), "opset": f"exported at opset {export_config.opset} (TensorRT {target} parses up to {target.max_onnx_opset})"}
            report["export"] = export(config.model, original, export_config, data).to_dict()
        progress.keep = True  # from here on, a failure keeps the run directory

        progress.phase = "stages"
        stages = [_with_shared_data(s, config) for s in _with_normalize(config)]
        if target is not None:
            from .trt.target import adapt_stages

            adapted, notes = adapt_stages(tuple(stages), target, config.calibration_cache)
            stages = list(adapted)
            report["tensorrt"]["stages"] = notes
        model = load_model(original)
        result = Pipeline(stages).run(model, run, log=log, cache=stage_cache(config, log))
        report["stages"] = result.report()
        final = result.model
        if config.normalize:
            from .stages.normalize import cleanup

            final, report["cleanup"] = cleanup(final)
        compressed = run.artifact("model.onnx")
        save_model(final, compressed)

        progress.phase = "compare"
        log(f"comparing on {config.data}")
        source = _data_factory(config)(model_inputs(original))
        cmp = compare(original, compressed, source, config.compare, config.backend, config.runner)
        report["compare"] = cmp.to_dict()

        latency = None
        if not config.skip_bench:
            progress.phase = "bench"
            log(f"benchmarking at batch {', '.join(map(str, config.bench.batch_sizes))}")
            b = bench([original, compressed], _bench_config(config), config.backend, config.runner, labels=["original", "compressed"])
            report["bench"] = b.to_dict()
            first = config.bench.batch_sizes[0]
            latency = (b.results[first]["original"]["p50_ms"], b.results[first]["compressed"]["p50_ms"])
        # stages that prune report the weights they zeroed as ``zeros_added``
        pruned = sum(int(s.report.get("zeros_added", 0)) for s in result.stages)
        report["metrics"] = summary(original, compressed, report["compare"], latency, pruned)
        report["notes"] = no_gain_notes(report, compressed)
        report["passed"] = cmp.passed
        report["status"] = "completed"  # the run finished; "passed" is the verdict
        report["artifacts"] = {"original": "artifacts/original.onnx", "model": "artifacts/model.onnx"}
        if target is not None:
            engine = _build_engine_if_possible(compressed, run.artifact("model.engine"), target, log)
            report["tensorrt"]["engine"] = engine
            if engine["built"]:
                report["artifacts"]["engine"] = "artifacts/model.engine"
                report["metrics"]["compression"]["bytes_engine"] = run.artifact("model.engine").stat().st_size
        report = run.public(report)
        run.write_report(report)
        write_html(run.path, report)
    return CompressResult(run.final, run.final / "artifacts" / "model.onnx", report)


@dataclasses.dataclass
class _Progress:
    phase: str = "load"
    keep: bool = False  # whether enough finished to be worth keeping


@contextlib.contextmanager
def _kept_on_failure(run: RunDir, report: dict[str, Any], log: Callable[[str], None]) -> Iterator[_Progress]:
    """Commit the run directory when the block succeeds. When it raises once the baseline is in
    place (``keep``), commit it anyway with what finished and ``report.json`` saying
    ``status: failed``, the phase or stage and the message, then re-raise; when it fails earlier
    (the model cannot be read or exported) or is interrupted, leave nothing."""
    progress = _Progress()
    try:
        yield progress
    except Exception as e:
        if not progress.keep:
            run.abort()
            raise
        report["status"] = "failed"
        report["failure"] = {"stage": getattr(e, "stage", None) or progress.phase, "message": str(e), "error": type(e).__name__}
        if getattr(e, "records", None):
            report["stages"] = [r.to_dict() for r in e.records]
        run.write_report(report)
        try:
            write_html(run.path, run.public(report))
        except Exception as page_error:  # the run's own error is the one to raise
            log(f"report.html not written: {type(page_error).__name__}: {page_error}")
        run.commit()
        log(f"run directory {run.final} keeps what finished; its report.json holds the error")
        raise
    except BaseException:
        run.abort()
        raise
    run.commit()


def _bench_config(config: CompressConfig) -> BenchConfig:
    """The bench settings with the job's input shapes (a dynamic sequence needs one to run)."""
    if config.bench.inputs or not config.export.inputs:
        return config.bench
    return config.bench.replace(inputs=config.export.inputs)


def _build_engine_if_possible(onnx_path: Path, engine_path: Path, version: TrtVersion, log: Callable[[str], None]) -> dict[str, Any]:
    """Build ``onnx_path``'s engine for ``version`` when that TensorRT is installed here (an engine is
    tied to the TensorRT that built it); otherwise report the build plan and the trtexec line to
    run on the target, so the report says what the engine build will be."""
    from .trt.build import build_engine, plan_build
    from .trt.config import BuildConfig
    from .trt.trtexec import trtexec_command

    build = BuildConfig(target_version=str(version))
    command = f"trtcompress build artifacts/{onnx_path.name} -o {engine_path.name} --target-version {version}"
    why = None
    if not available("tensorrt"):
        why = "TensorRT is not installed here"
    else:
        import tensorrt

        try:
            installed = parse_version(tensorrt.__version__)
        except ConfigError as e:
            installed, why = None, f"the installed TensorRT cannot build for this target: {e}"
        if installed is not None and (installed.major, installed.minor) != (version.major, version.minor):
            why = f"TensorRT {installed} is installed, not the targeted {version}"
    if why is not None:
        plan = plan_build(onnx_path, build, version)
        return {"built": False, "why": f"{why}; build on the target with: {command}", "plan": plan.to_dict(),
                "trtexec": trtexec_command(plan, f"artifacts/{onnx_path.name}", engine_path.name)}
    log(f"building the TensorRT {version} engine")
    result = build_engine(onnx_path, engine_path, build)
    return {"built": True, "path": f"artifacts/{engine_path.name}", "result": result.to_dict()}


NO_GAIN = 1.02  # a size or speed ratio at or below this is no gain


def no_gain_notes(report: dict[str, Any], model: str | os.PathLike | None = None) -> list[str]:
    """One line each where the defaults made the model worse for nothing: the stages' own notes
    (a stage that changed nothing), a compressed model slower than the original in the benchmark
    (naming, for the CPU form at ``model``, the layers that slow it: :func:`slow_cpu_layers`), and
    outputs that changed with no size or speed gain."""
    notes = [f"{s['name']}: {n}" for s in report.get("stages", []) for n in s["report"].get("notes", [])]
    bench = report.get("bench")
    speedups = {b: v["compressed"] for b, v in bench["speedup_vs_first"].items()} if bench else {}
    slower = {b: x for b, x in speedups.items() if x is not None and x < 1.0}
    if slower:
        which = ", ".join(f"{x:.2f}x at batch {b}" for b, x in slower.items())
        stages = ", ".join(s["name"] for s in report.get("stages", [])) or "no stage"
        line = f"the compressed model is slower than the original on this CPU ({which}) after {stages}: it costs accuracy for no speed"
        layers = slow_cpu_layers(model) if model is not None else {}
        if layers:
            line += "; " + "; ".join(f"{why}: {_names(names)}" for why, names in layers.items())
        notes.append(line)
        if report.get("stages"):  # the benchmarked model is the last stage's output: its report says so too
            report["stages"][-1]["report"].setdefault("notes", []).append(line)
    ratio = report["metrics"]["compression"]["ratio_disk"] or 1.0
    changed = any(o["max_abs"] > 0 for o in report["compare"]["outputs"].values())
    faster = any(x is not None and x > NO_GAIN for x in speedups.values())
    if report.get("stages") and changed and ratio <= NO_GAIN and not faster and not slower:
        backend = report.get("config", {}).get("backend", "")
        timing = f" on {backend}" if speedups else " (no benchmark run)"
        notes.append(f"the outputs changed (max abs error {max(o['max_abs'] for o in report['compare']['outputs'].values()):.3g}) for {ratio:.2f}x on disk and no speedup{timing}")
    return notes


# What each kind of layer of the CPU form (operator-form uint8, quant.lower_cpu) was measured to
# cost against float on CPU (benchmarks/cpu_int8_layers.py; RESULTS.md, "Does INT8 pay per layer").
_DEPTHWISE = "depthwise convs in INT8 (measured 0.87-1.13x of float)"
_FLOAT_OUT = "generic integer kernels with a float output (ConvInteger measured 0.10-1.14x of float)"
_ISLAND = "float layers between integer ones (each adds a DequantizeLinear and a QuantizeLinear)"
_FLOAT_OUTPUT_OPS = ("ConvInteger", "MatMulInteger")
_CPU_FORM_OPS = ("QLinearConv", "QLinearMatMul", "MatMulIntegerToFloat", *_FLOAT_OUTPUT_OPS)
_LAYER_OPS = ("Conv", "ConvTranspose", "Gemm", "MatMul")


def slow_cpu_layers(model: str | os.PathLike) -> dict[str, list[str]]:
    """The layers of a CPU-form model that INT8 makes slow or that break its integer path, by why
    (empty for a model without the CPU form's integer ops, e.g. the TensorRT form)."""
    m = load_model(model, load_external_data=False, check=False)
    nodes = list(m.graph.node)
    if not any(n.op_type in _CPU_FORM_OPS for n in nodes):
        return {}
    shapes = {t.name: list(t.dims) for t in m.graph.initializer}
    producer = {o: n for n in nodes for o in n.output}
    out: dict[str, list[str]] = {}
    for n in nodes:
        if n.op_type == "QLinearConv":
            group = next((a.i for a in n.attribute if a.name == "group"), 1)
            w = shapes.get(n.input[3], [])
            if group > 1 and len(w) > 1 and w[1] == 1:
                out.setdefault(_DEPTHWISE, []).append(n.name)
        elif n.op_type in _FLOAT_OUTPUT_OPS:
            out.setdefault(_FLOAT_OUT, []).append(n.name)
        elif n.op_type in _LAYER_OPS and n.input and getattr(producer.get(n.input[0]), "op_type", "") == "DequantizeLinear":
            out.setdefault(_ISLAND, []).append(n.name)
    return out


def _names(names: list[str], shown: int = 5) -> str:
    more = f" and {len(names) - shown} more" if len(names) > shown else ""
    return f"{len(names)} ({', '.join(names[:shown])}{more})"


def _data_factory(config: CompressConfig):
    options = config.data_options()
    return lambda inputs: open_data(config.data, inputs, options)


def reads_calibration_data(stage: Config) -> bool:
    """Whether ``stage`` as configured reads calibration data (a config says so with ``reads_calib_data()``)."""
    reads = getattr(stage, "reads_calib_data", None)
    return bool(reads and reads())


def _require_calibration(config: CompressConfig) -> None:
    """Refuse, before any work, a stage that reads data when no calibration data is named."""
    if config.calib or config.calib_from_data:
        return
    names = [get_stage(s).name for s in config.stages if reads_calibration_data(s) and not getattr(s, "calib", None)]
    if names:
        raise ConfigError(
            f"stage {', '.join(names)} calibrates on data: give --calib DATA (disjoint from --data), or --calib-from-data split "
            "to split --data into disjoint halves (--calib-from-data same calibrates on the evaluation data)"
        )


def _require_torch_model(config: CompressConfig) -> None:
    """Refuse, when the job is built, a stage that trains the torch model when MODEL is ONNX."""
    from .stages.finetune import needs_torch_model

    names = [get_stage(s).name for s in config.stages if needs_torch_model(s) and not getattr(s, "torch_model", "")]
    if names and config.is_onnx:
        raise ConfigError(
            f"stage {', '.join(names)} retrains the torch model, and {config.model} is ONNX: give the torch model "
            "(pkg.module:factory or file.py:factory; compress exports it) or drop the stage"
        )


def _split_data(config: CompressConfig, work: Path) -> tuple[CompressConfig, dict[str, Any]]:
    """The config the run uses (``data`` and ``calib`` after a split) and what the report records."""
    if config.calib_from_data == "same":
        return config, {"mode": "same", "note": "calibrated on the evaluation data (--calib-from-data same): accuracy figures are optimistic"}
    if config.calib_from_data != "split":
        return config, {"mode": "separate", "calibration": config.calib, "evaluation": config.data}
    src = Path(config.data)
    files = sorted(p for p in src.iterdir() if p.suffix.lower() in _SPLIT_SUFFIXES) if src.is_dir() else []
    if len(files) < 2:
        raise ConfigError(f"--calib-from-data split needs --data to be a directory of at least 2 data files (.npz/.npy or images); {config.data!r} is not: give --calib DATA")
    parts = {"calibration": files[0::2], "evaluation": files[1::2]}
    for part, chosen in parts.items():
        (work / part).mkdir()
        for f in chosen:
            (work / part / f.name).symlink_to(f.resolve())
    record = {"mode": "split", "rule": "sorted files: even positions calibrate, odd ones evaluate", "source": config.data,
              **{part: [f.name for f in chosen] for part, chosen in parts.items()}}
    return config.replace(data=str(work / "evaluation"), calib=str(work / "calibration"), calib_from_data=""), record


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
    takes = getattr(stage, "takes_shared", lambda field: True)  # a stage may leave a field alone as configured (qat off)
    shared = {f: get(config) for f, get in _SHARED_DATA_FIELDS.items() if f in names and not getattr(stage, f) and takes(f)}
    changes = {f: v for f, v in shared.items() if v}
    return stage.replace(**changes) if changes else stage
