"""Run a list of stages, recording each stage's report (and artifacts) in a run directory.

Each stage's contract (:mod:`trtcompress.contracts`) is checked: a sequence in which a stage would
break what an earlier one established is refused when the pipeline is built (before anything
runs) or warned about; after each stage, what earlier stages established must still hold.
"""
from __future__ import annotations

import dataclasses
import time
from typing import TYPE_CHECKING, Any, Sequence, Union

from .config import Config
from .contracts import PROPERTIES, check_after, check_sequence, consumed, measure
from .errors import StageError, UserError
from .rundir import RunDir
from .stage import StageFn, StageResult, get_stage

__all__ = ["Pipeline", "PipelineResult", "StageRecord"]

if TYPE_CHECKING:
    from .stage_cache import StageCache

Step = Union[Config, "tuple[StageFn, Config]"]


@dataclasses.dataclass
class StageRecord:
    name: str
    config: dict[str, Any]
    report: dict[str, Any]
    seconds: float
    artifacts: list[str]
    warnings: list[str] = dataclasses.field(default_factory=list)
    cached: bool = False  # reused from the stage cache (trtcompress.stage_cache), not recomputed

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
        self.entries = [getattr(fn, "stage_entry", None) for _, fn, _ in self.steps]
        # refuses (ConfigError) before anything runs; warnings are recorded with their stage
        self.warnings = check_sequence([(n, e) for (n, _, _), e in zip(self.steps, self.entries)])

    @property
    def names(self) -> list[str]:
        return [n for n, _, _ in self.steps]

    def run(self, model: Any, run_dir: RunDir | None = None, log=None, cache: StageCache | None = None) -> PipelineResult:
        """Run the stages on ``model``. With ``cache``, each finished stage is stored, and a stage
        whose key (name, config, input model, data) is stored is reused when the cache allows it."""
        records: list[StageRecord] = []
        established: dict[str, str] = {}  # property -> the stage that established it
        counts: dict[str, int] = {}  # how often each established property holds in ``model``
        for i, (name, fn, cfg) in enumerate(self.steps):
            if log:
                log(f"[{i + 1}/{len(self.steps)}] {name}")
            notes = [msg for j, msg in self.warnings if j == i]
            for msg in notes:
                if log:
                    log(f"warning: {msg}")
            t0 = time.perf_counter()
            key = cache.key(name, cfg, model) if cache is not None else None
            result = cache.get(key) if cache is not None else None
            cached = result is not None
            if cached and log:
                log(f"stage {name}: reused (cached)")
            try:
                if result is None:
                    result = fn(model, cfg)
            except UserError as e:
                before = ", ".join(r.name for r in records) or "none"
                err = StageError(f"stage {name!r} failed: {e} (stages completed before it: {before})")
                err.stage, err.records = name, records
                raise err from e
            if not isinstance(result, StageResult):
                raise TypeError(f"stage {name!r} returned {type(result).__name__}, not StageResult")
            ensures = getattr(self.entries[i], "ensures", ())
            for prop in consumed(self.entries[i]):
                established.pop(prop, None)
            after = measure(result.model, sorted(set(established) | set(ensures)))
            broken = check_after(name, counts, after, established)
            if broken:
                err = StageError(broken + "; change the order of the stages")
                err.stage, err.records = name, records
                raise err
            for prop in ensures:
                if after.get(prop):
                    established.setdefault(prop, name)
                elif prop in after:
                    notes.append(f"stage {name!r} left no {PROPERTIES[prop][1]} in the model")
            counts = {p: after[p] for p in established if p in after}
            if cache is not None and not cached:
                result = cache.put(key, name, cfg, result, time.perf_counter() - t0)
            files = []
            if run_dir is not None:
                for fname, content in result.artifacts.items():
                    run_dir.write_artifact(f"{i:02d}-{name}-{fname}", content)
                    files.append(f"artifacts/{i:02d}-{name}-{fname}")
            records.append(StageRecord(name, cfg.to_dict(), result.report, time.perf_counter() - t0, files, notes, cached))
            model = result.model
        return PipelineResult(model, records)
