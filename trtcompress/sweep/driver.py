"""``sweep``: every variant of a grid as an ordinary ``compress`` run, then one page with the Pareto fronts.

``runs/<sweep>/`` holds one run directory per variant (``runs/<sweep>/<variant>/`` with its
``recipe.toml`` and ``report.json``, exactly what ``compress`` writes), the stage cache the
variants share (``.cache``: a variant reuses the normalize or low-rank result another computed
when resuming), each variant's log (``.logs/<variant>.log``), ``sweep.json`` (the plan, each
variant's outcome and figures, the fronts; rewritten as variants finish) and ``sweep.html``.

Resuming (``--resume``) skips a variant whose run directory holds a completed ``report.json``
and a recipe equal to the variant's config (a changed grid or base reruns it), and reruns the
rest with the stage cache. Dot folders (``.cache``, ``.logs``, a variant's temporary directory)
are never read as variants.

Latency is each variant's own benchmark (its p50 at the first batch size). Variants running in
parallel on one machine share its CPUs, so their absolute latencies carry that load; each run's
speedup is still measured fairly (both models interleaved in the same process). Use ``--jobs 1``
when the latency front is the point.
"""
from __future__ import annotations

import dataclasses
import datetime as _dt
import os
import re
import shutil
import statistics
from pathlib import Path
from typing import Any, Callable, Sequence

from .. import __version__
from ..config import Config
from ..errors import ConfigError
from ..fileio import write_json
from ..progress import Progress
from .executors import VariantTask, make_executor, needs_gpu
from .grid import Axis, VariantPlan
from .pareto import front

__all__ = ["SweepConfig", "SweepResult", "run_sweep", "finished_report", "SWEEP_JSON", "SWEEP_SCHEMA_VERSION", "summarize", "BASELINE"]

SWEEP_JSON = "sweep.json"
SWEEP_SCHEMA_VERSION = 1
BASELINE = "FP32"  # the uncompressed model, a point of every front (it agrees with itself: accuracy 1)
LOGS = ".logs"
# the fronts: accuracy against each cost, lower cost better
COSTS = {"latency": ("latency_ms", "p50 latency, ms"), "size": ("size_bytes", "weights in memory, bytes")}


@dataclasses.dataclass
class SweepResult:
    path: Path
    data: dict[str, Any]

    @property
    def code(self) -> int:
        """0 when every variant ran to the end (a variant missing its thresholds is a result, not
        a failure), 1 when one failed to run."""
        return 0 if all(v["status"] == "completed" for v in self.data["variants"]) else 1


@dataclasses.dataclass(frozen=True)
class SweepConfig(Config):
    """How a sweep runs: its directory ``runs_dir/name``; ``jobs`` local processes (0: one per CPU,
    at most one per variant) or, with ``ray`` (a cluster address), Ray tasks asking for
    ``cpus_per_variant`` CPUs each; ``resume`` skips finished variants, ``overwrite`` reruns them."""

    name: str = "sweep"
    runs_dir: str = "runs"
    jobs: int = 0
    ray: str | None = None
    cpus_per_variant: int = 1
    resume: bool = False
    overwrite: bool = False

    def validate(self) -> None:
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", self.name):
            raise ConfigError(f"sweep name {self.name!r} must be letters, digits, '.', '_' or '-'")
        if self.jobs < 0:
            raise ConfigError(f"--jobs must be >= 1 (0: one per CPU, at most one per variant), got {self.jobs}")
        if self.jobs and self.ray is not None:
            raise ConfigError("--jobs sizes the local process pool; with --ray the cluster's resources decide (drop --jobs)")
        if self.cpus_per_variant < 1:
            raise ConfigError(f"--cpus-per-variant must be >= 1, got {self.cpus_per_variant}")
        if self.resume and self.overwrite:
            raise ConfigError("give --resume (skip finished variants) or --overwrite (run every variant again), not both")


def run_sweep(sweep: SweepConfig, plans: Sequence[VariantPlan], axes: Sequence[Axis], base: Any, *,
              command: Sequence[str] | None = None, log: Callable[[str], None] = lambda m: None) -> SweepResult:
    """Run ``plans`` (from :func:`trtcompress.sweep.grid.expand` over ``axes`` and the ``base``
    CompressConfig) in ``sweep.runs_dir/sweep.name``; see the module docstring."""
    name, resume, overwrite = sweep.name, sweep.resume, sweep.overwrite
    root = Path(sweep.runs_dir) / name
    _check_dir(root, resume or overwrite)
    fresh = not root.exists()
    pool = make_executor(sweep.ray, sweep.jobs, len(plans))
    data: dict[str, Any] = {
        "sweep_schema_version": SWEEP_SCHEMA_VERSION, "trtcompress": __version__, "name": name, "status": "running",
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "command": list(command) if command is not None else None, "model": base.model, "executor": pool.describe(),
        "grid": {"axes": {a.key: list(a.values) for a in axes}, "base": _recipe(base.replace(name=None))},
        "variants": [{"name": p.name, "axes": p.axes, "status": "pending", "recipe": _recipe(p.config)} for p in plans],
    }
    by_name = {v["name"]: v for v in data["variants"]}
    tasks = []
    for p in plans:
        report = finished_report(root / p.name, p.config) if resume else None
        if report is not None:
            by_name[p.name].update(summarize(report), status="completed", reused=True)
            continue
        cache = p.config.cache
        config = p.config.replace(resume=resume and cache, overwrite=resume or overwrite)
        tasks.append(VariantTask(p.name, config.to_dict(), str(root / LOGS / f"{p.name}.log"), os.getcwd(), sweep.cpus_per_variant,
                                 1 if needs_gpu(p.config) else 0, tuple(command) if command is not None else None))
    reused = len(plans) - len(tasks)
    if reused:
        log(f"resuming sweep {name}: {reused} of {len(plans)} variants finished before, {len(tasks)} to run")
    root.mkdir(parents=True, exist_ok=True)
    write_json(root / SWEEP_JSON, data)
    bar = Progress(f"sweep {name} ({pool.describe()['kind']})", len(plans), unit="variant", initial=reused)

    def done(outcome: dict[str, Any]) -> None:
        entry = by_name[outcome["name"]]
        report = outcome.get("report")
        entry.update(summarize(report) if isinstance(report, dict) and outcome["status"] == "completed" else {},
                     status=outcome["status"], reused=False, seconds=outcome.get("seconds"), ran_on={k: outcome[k] for k in ("host", "pid", "node", "ray") if k in outcome})
        if outcome.get("error"):
            entry["error"] = outcome["error"]
            first = (outcome["error"]["message"].strip().splitlines() or [outcome["error"]["type"]])[0]
            log(f"variant {entry['name']}: failed: {first} (log: {root / LOGS / (entry['name'] + '.log')})")
        else:
            log(f"variant {entry['name']}: {_line(entry)}")
        bar.update(1)
        write_json(root / SWEEP_JSON, data)

    try:
        pool.run(tasks, done)
    except KeyboardInterrupt:
        bar.close(failed=True)
        data["status"] = "interrupted"
        _finish(root, data)
        log(f"sweep {name} interrupted: the same command with --resume continues it (the {bar.n} finished variants are kept)")
        raise
    except BaseException as e:
        bar.close(failed=True)
        if fresh and bar.n == 0:  # refused before any variant ran (a cluster without the GPUs asked for): leave nothing
            shutil.rmtree(root, ignore_errors=True)
        else:
            data.update(status="failed", error={"type": type(e).__name__, "message": str(e)})
            _finish(root, data)
        raise
    bar.close()
    data["status"] = "completed"
    _finish(root, data)
    return SweepResult(root, data)


def _check_dir(root: Path, again: bool) -> None:
    if not os.path.lexists(root) or (root.is_dir() and not any(root.iterdir())):
        return
    if not root.is_dir() or not (root / SWEEP_JSON).is_file():
        raise ConfigError(f"{root} exists and is not a sweep directory (no {SWEEP_JSON}); it is left alone: choose another --name or --runs-dir")
    if not again:
        raise ConfigError(f"sweep directory {root} exists; pass --resume to continue it (finished variants are skipped) "
                          "or --overwrite to run every variant again")


def _recipe(config: Any) -> dict[str, Any]:
    """What the variant's recipe file holds (a run's recipe leaves out overwrite and resume)."""
    return config.replace(overwrite=False, resume=False).to_dict()


def finished_report(run_dir: Path, config: Any) -> dict[str, Any] | None:
    """The report of a completed run of ``config`` in ``run_dir``, or None: no run there, one that
    failed or was cut short, or one of another recipe."""
    import json

    from ..job import CompressConfig
    from ..recipe import RECIPE_FORMATS, read_recipe

    try:
        report = json.loads((run_dir / "report.json").read_text())
    except (OSError, ValueError):
        return None
    recipes = [run_dir / f"recipe{s}" for s in RECIPE_FORMATS if (run_dir / f"recipe{s}").is_file()]
    if not isinstance(report, dict) or report.get("status") != "completed" or not isinstance(report.get("metrics"), dict) or not recipes:
        return None
    try:
        ran = CompressConfig.from_dict(read_recipe(recipes[0])).to_dict()
    except ConfigError:
        return None
    return report if ran == _recipe(config) else None


def summarize(report: dict[str, Any]) -> dict[str, Any]:
    """A variant's figures from its report: accuracy against FP32, p50 latency, weights in memory."""
    from ..report.variants import accuracy_of, run_variants

    accuracy, metric, output = accuracy_of(report)
    fp32, compressed = run_variants(report)
    c = (report.get("metrics") or {}).get("compression") or {}
    return {"accuracy": accuracy, "metric": metric, "output": output, "latency_ms": compressed.latency_ms, "batch": compressed.batch,
            "size_bytes": c.get("weight_bytes_in_memory_compressed"), "disk_bytes": c.get("bytes_compressed"),
            "baseline": {"latency_ms": fp32.latency_ms, "size_bytes": c.get("weight_bytes_in_memory_original"), "disk_bytes": c.get("bytes_original")},
            "speedup": (report.get("metrics") or {}).get("speedup"), "passed": report.get("passed"),
            "notes": report.get("notes") or []}


def baseline(variants: Sequence[dict[str, Any]]) -> dict[str, Any] | None:
    """The FP32 point: accuracy 1, its size, and the median of its latency over the variants' runs
    (each run measured it beside its compressed model)."""
    done = [v for v in variants if v["status"] == "completed" and v.get("baseline")]
    if not done or all(v.get("accuracy") is None for v in done):
        return None
    latencies = [v["baseline"]["latency_ms"] for v in done if v["baseline"].get("latency_ms") is not None]
    return {"name": BASELINE, "accuracy": 1.0, "latency_ms": statistics.median(latencies) if latencies else None,
            "size_bytes": done[0]["baseline"].get("size_bytes"), "disk_bytes": done[0]["baseline"].get("disk_bytes")}


def fronts(variants: Sequence[dict[str, Any]], base: dict[str, Any] | None) -> dict[str, list[str]]:
    """For each cost, the names on the front of accuracy against it (the FP32 baseline included)."""
    points = [v for v in variants if v["status"] == "completed"] + ([base] if base else [])
    return {cost: front([(p["name"], p.get("accuracy"), p.get(key)) for p in points]) for cost, (key, _) in COSTS.items()}


def _finish(root: Path, data: dict[str, Any]) -> None:
    from ..report.sweep_page import write_sweep_html

    data["baseline"] = baseline(data["variants"])
    data["fronts"] = fronts(data["variants"], data["baseline"])
    data["metric"] = next((v["metric"] for v in data["variants"] if v.get("metric")), None)
    write_json(root / SWEEP_JSON, data)
    write_sweep_html(root, data)


def _line(v: dict[str, Any]) -> str:
    acc = f"{v['accuracy']:.4g} {v['metric']}" if v.get("accuracy") is not None else "no accuracy"
    lat = f", p50 {v['latency_ms']:.3g} ms at batch {v['batch']}" if v.get("latency_ms") is not None else ""
    size = f", weights {v['size_bytes'] / 1e6:.3g} MB" if v.get("size_bytes") else ""
    return f"{acc}{lat}{size}" + (f" ({v['seconds']:.0f} s)" if v.get("seconds") else "")
