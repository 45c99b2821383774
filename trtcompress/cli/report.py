"""``trtcompress report RUN [-o PAGE] [--check]``: render ``RUN/report.html`` again from ``RUN/report.json``
(after a change of trtcompress, or to check a report against its schema). RUN is a run directory
or its report.json; a sweep's directory (``sweep.json``) gets its ``sweep.html`` again."""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from .common import Output, log

__all__ = ["add_parser", "run"]


def add_parser(sub) -> argparse.ArgumentParser:
    p = sub.add_parser("report", help="render a run's report.html from its report.json", description=__doc__)
    p.add_argument("run", help="a run directory (runs/NAME) or its report.json")
    p.add_argument("-o", "--output", default=None, help="where to write the page (default: report.html beside report.json)")
    p.add_argument("--check", action="store_true", help="only check report.json against its schema: exit 1 where it departs")
    return p


def load_report(run: str) -> tuple[dict, Path]:
    """The report of run directory (or report.json) ``run``, and the path it was read from."""
    from ..errors import ConfigError

    path = Path(run)
    if path.is_dir():
        path = path / "report.json"
    try:
        report = json.loads(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"no report at {path}: give a run directory written by 'trtcompress compress' or its report.json") from None
    except json.JSONDecodeError as e:
        raise ConfigError(f"{path} is not valid JSON ({e}); run 'trtcompress compress' again to write it") from None
    if not isinstance(report, dict):
        raise ConfigError(f"{path} holds a JSON {type(report).__name__}, not a trtcompress report (an object)")
    return report, path


def run(args: argparse.Namespace) -> Output:
    from ..errors import ConfigError
    from ..fileio import write_text
    from ..report import PAGE_NAME, SCHEMA_VERSION, render, validate

    sweep = Path(args.run) / "sweep.json"
    if sweep.is_file() and not (Path(args.run) / "report.json").exists():
        return _sweep_page(sweep, args.output)
    report, path = load_report(args.run)
    version = report.get("schema_version")
    if isinstance(version, int) and version > SCHEMA_VERSION:
        raise ConfigError(f"{path} follows report schema v{version}; this trtcompress reads up to v{SCHEMA_VERSION}: upgrade trtcompress")
    problems = validate(report) if version is not None else [f"$: no schema_version (written before the versioned schema, v{SCHEMA_VERSION})"]
    for p in problems:
        log(f"trtcompress report: {path}: {p}")
    data = {"report": str(path), "schema_version": SCHEMA_VERSION, "problems": problems}
    if args.check:
        return Output(data, f"{path}: {'conforms to' if not problems else 'departs from'} report schema v{SCHEMA_VERSION}", 1 if problems else 0)
    page = write_text(args.output or path.with_name(PAGE_NAME), render(report))  # atomic, as every page of a run
    return Output({**data, "written": [str(page)]}, f"wrote {page}")


def _sweep_page(path: Path, output: str | None) -> Output:
    from ..errors import ConfigError
    from ..fileio import write_text
    from ..report.sweep_page import SWEEP_PAGE, render_sweep

    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise ConfigError(f"{path} is not valid JSON ({e}); run the sweep again with --resume to write it") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path} holds a JSON {type(data).__name__}, not a trtcompress sweep (an object)")
    page = write_text(output or path.with_name(SWEEP_PAGE), render_sweep(data))
    return Output({"sweep": str(path), "written": [str(page)]}, f"wrote {page}")
