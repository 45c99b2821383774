"""Run a list of stages, recording each stage's report (and artifacts) in a run directory."""
from __future__ import annotations

import dataclasses
import time
from typing import Any, Sequence, Union

from .config import Config
from .errors import StageError, UserError
from .rundir import RunDir
from .stage import StageFn, StageResult, get_stage

__all__ = ["Pipeline", "PipelineResult", "StageRecord"]

Step = Union[Config, "tuple[StageFn, Config]"]


@dataclasses.dataclass
class StageRecord:
    name: str
    config: dict[str, Any]
    report: dict[str, Any]
    seconds: float
    artifacts: list[str]

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclasses.dataclass
class PipelineResult:
    model: Any
    stages: list[StageRecord]

    def report(self) -> list[dict[str, Any]]:
        return [s.to_dict() for s in self.stages]


class Pipeline:
    """A sequence of stages. A step is a config (its registered stage runs) or ``(fn, config)``."""

    def __init__(self, steps: Sequence[Step]):
        self.steps: list[tuple[str, StageFn, Config]] = []
        for step in steps:
            if isinstance(step, Config):
                entry = get_stage(step)
                self.steps.append((entry.name, entry.fn, step))
            else:
                fn, cfg = step
                self.steps.append((getattr(fn, "stage_name", fn.__name__), fn, cfg))

    @property
    def names(self) -> list[str]:
        return [n for n, _, _ in self.steps]

    def run(self, model: Any, run_dir: RunDir | None = None, log=None) -> PipelineResult:
        records: list[StageRecord] = []
        for i, (name, fn, cfg) in enumerate(self.steps):
            if log:
                log(f"[{i + 1}/{len(self.steps)}] {name}")
            t0 = time.perf_counter()
            try:
                result = fn(model, cfg)
            except UserError as e:
                before = ", ".join(r.name for r in records) or "none"
                err = StageError(f"stage {name!r} failed: {e} (stages completed before it: {before})")
                err.stage, err.records = name, records
                raise err from e
            if not isinstance(result, StageResult):
                raise TypeError(f"stage {name!r} returned {type(result).__name__}, not StageResult")
            files = []
            if run_dir is not None:
                for fname, content in result.artifacts.items():
                    run_dir.write_artifact(f"{i:02d}-{name}-{fname}", content)
                    files.append(f"artifacts/{i:02d}-{name}-{fname}")
            records.append(StageRecord(name, cfg.to_dict(), result.report, time.perf_counter() - t0, files))
            model = result.model
        return PipelineResult(model, records)
