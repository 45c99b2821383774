"""``sweep.html``: one self-contained page from a sweep's ``sweep.json``.

The same rules as ``report.html`` (inline CSS and SVG, no script, a Content-Security-Policy that
forbids every fetch): the Pareto fronts of accuracy against latency and against size as plots,
each front's variants with their recipes, and a table of every variant linking to its own report.
"""
from __future__ import annotations

import os
import shlex
from html import escape
from pathlib import Path
from typing import Any

from ..fileio import write_text
from . import svg
from .html import _CSP, _CSS, _f, _figures, _json, _table
from .plots import Figure, number

__all__ = ["SWEEP_PAGE", "render_sweep", "write_sweep_html", "front_figures"]

SWEEP_PAGE = "sweep.html"
_COSTS = {"latency": ("latency_ms", "p50 latency at batch {batch}, ms", 1.0, "Accuracy against latency"),
          "size": ("size_bytes", "weights in memory, MB", 1e6, "Accuracy against size")}


def write_sweep_html(sweep_dir: str | os.PathLike, data: dict[str, Any]) -> Path:
    return write_text(Path(sweep_dir) / SWEEP_PAGE, render_sweep(data))


def _points(data: dict[str, Any]) -> list[dict[str, Any]]:
    base = data.get("baseline")
    done = [v for v in data.get("variants") or [] if isinstance(v, dict) and v.get("status") == "completed"]
    return done + ([base] if isinstance(base, dict) else [])


def front_figures(data: dict[str, Any]) -> list[Figure]:
    """One scatter per cost: every completed variant and the FP32 baseline, the front ringed and joined."""
    out = []
    metric = data.get("metric") or "accuracy"
    batch = next((v.get("batch") for v in data.get("variants") or [] if isinstance(v, dict) and v.get("batch")), None)
    for cost, (key, label, scale, title) in _COSTS.items():
        marks = _marks(data)
        pts = [svg.Point(marks.get(str(p["name"]), str(p["name"])), number(p.get(key)) / scale, number(p["accuracy"]), str(p["name"]))
               for p in _points(data) if number(p.get(key)) is not None and number(p.get("accuracy")) is not None]
        front = [marks.get(n, n) for n in (data.get("fronts") or {}).get(cost) or []]
        if not pts:
            continue
        plot = f"sweep-front-{cost}"
        out.append(Figure(plot, svg.scatter(plot, title, pts, label.format(batch=batch), metric, width=480, height=360, front=front),
                          f"Each variant's {metric} against its {label.split(',')[0].format(batch=batch)} (points numbered as in the tables); the ringed points joined by the dashed "
                          f"line are the Pareto front: no other point is at least as accurate and {'faster' if cost == 'latency' else 'smaller'}."))
    return out


def _marks(data: dict[str, Any]) -> dict[str, str]:
    """Each variant's short mark on the plots (its number in the grid's order; FP32 is itself):
    a dozen variants' full names would hide each other."""
    return {str(v.get("name")): str(i) for i, v in enumerate(data.get("variants") or [], 1) if isinstance(v, dict)}


def _named(data: dict[str, Any], name: Any) -> str:
    mark = _marks(data).get(str(name))
    return f"{mark}. {name}" if mark else str(name)


def render_sweep(data: dict[str, Any]) -> str:
    name = str(data.get("name", "sweep"))
    body = [_header(data, name), _fronts(data), _variants(data), _failures(data), _reproduce(data)]
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f'<meta http-equiv="Content-Security-Policy" content="{_CSP}">'
            '<meta name="viewport" content="width=device-width, initial-scale=1">'
            f"<title>trtcompress sweep: {escape(name)}</title><style>{_CSS}</style></head>\n"
            f"<body><main>\n{''.join(b for b in body if b)}\n</main></body></html>\n")


def _header(d: dict[str, Any], name: str) -> str:
    variants = [v for v in d.get("variants") or [] if isinstance(v, dict)]
    counts = {s: sum(v.get("status") == s for v in variants) for s in ("completed", "failed", "pending")}
    reused = sum(bool(v.get("reused")) for v in variants)
    status = str(d.get("status", "unknown"))
    kind = "pass" if status == "completed" and not counts["failed"] else "fail" if counts["failed"] else "warn"
    ex = d.get("executor") or {}
    where = f"Ray at {ex.get('address')}" if ex.get("kind") == "ray" else f"{ex.get('jobs', '?')} local process(es) on {ex.get('cpus', '?')} CPUs"
    return (f'<header><h1>sweep {escape(name)} <span class="badge {kind}">{escape(status.upper())}</span></h1>'
            f'<div class="sub">model <code>{escape(str(d.get("model", "?")))}</code> · {len(variants)} variants: {counts["completed"]} completed '
            f'({reused} from an earlier run), {counts["failed"]} failed, {counts["pending"]} not run · {escape(where)} · '
            f'{escape(str(d.get("created", "")))} · trtcompress {escape(str(d.get("trtcompress", "?")))}</div></header>')


def _axes_text(v: dict[str, Any]) -> str:
    axes = v.get("axes") or {}
    return ", ".join(f"{k}={_value(x)}" for k, x in axes.items()) or "the base recipe"


def _value(x: Any) -> str:
    return ("on" if x else "off") if isinstance(x, bool) else str(x)


def _stages(recipe: Any) -> str:
    stages = (recipe or {}).get("stages") if isinstance(recipe, dict) else None
    return " → ".join(str(s.get("stage")) for s in stages or [] if isinstance(s, dict)) or "no stage"


def _fronts(d: dict[str, Any]) -> str:
    figs = front_figures(d)
    if not figs:
        return "<h2>Pareto fronts</h2><p>No variant completed with an accuracy figure: nothing to draw.</p>"
    by_name = {str(p.get("name")): p for p in _points(d)}
    parts = ["<h2>Pareto fronts</h2>", _figures(figs)]
    for cost, (key, label, scale, title) in _COSTS.items():
        names = (d.get("fronts") or {}).get(cost) or []
        if not names:
            continue
        rows, recipes = [], []
        for n in names:
            p = by_name.get(n, {})
            rows.append([_named(d, n), _axes_text(p) if n in by_name and p.get("recipe") else "uncompressed baseline", _stages(p.get("recipe")),
                         _f(p.get("accuracy"), ".4f"), _f(number(p.get(key)) / scale if number(p.get(key)) is not None else None, ".4g")])
            if p.get("recipe"):
                recipes.append(f"<details><summary>recipe of <b>{escape(n)}</b> (its <code>{escape(n)}/recipe.toml</code>)</summary>{_json(p['recipe'])}</details>")
        parts.append(f"<h3>{escape(title)}: the front</h3>"
                     + _table(["variant", "axes", "stages", d.get("metric") or "accuracy", label.format(batch=_batch(d))], rows, 3)
                     + "".join(recipes))
    return "".join(parts)


def _batch(d: dict[str, Any]) -> Any:
    return next((v.get("batch") for v in d.get("variants") or [] if isinstance(v, dict) and v.get("batch")), None)


def _variants(d: dict[str, Any]) -> str:
    fronts = d.get("fronts") or {}
    rows = []
    variants = [v for v in d.get("variants") or [] if isinstance(v, dict)]
    base = d.get("baseline")
    for v in variants + ([base] if isinstance(base, dict) else []):
        on = ", ".join(c for c, names in fronts.items() if v.get("name") in (names or [])) or "-"
        mb = lambda x: _f(number(x) / 1e6 if number(x) is not None else None, ".4g")  # noqa: E731
        rows.append([_named(d, v.get("name")), _axes_text(v) if v is not base else "uncompressed baseline", v.get("status", "baseline") if v is not base else "-",
                     _f(v.get("accuracy"), ".4f"), _f(v.get("latency_ms"), ".4g"), mb(v.get("size_bytes")), mb(v.get("disk_bytes")),
                     _f(v.get("speedup"), ".2f", "x"), {True: "yes", False: "no"}.get(v.get("passed"), "-"), _f(v.get("seconds"), ".1f"),
                     "yes" if v.get("reused") else "-", on])
    head = ["variant", "axes", "status", d.get("metric") or "accuracy", f"p50 ms (batch {_batch(d)})", "weights in memory, MB", "on disk, MB",
            "speedup", "passed", "seconds", "reused", "on front"]
    links = "".join(f'<li><a href="{escape(str(v["name"]))}/report.html">{escape(str(v["name"]))}</a></li>'
                    for v in variants if v.get("status") == "completed")
    return ("<h2>Every variant</h2><p class=\"sub\">Each variant is an ordinary compress run in its own directory; accuracy is against the FP32 "
            "model on the evaluation data, latency each run's own benchmark (variants run in parallel share the machine), "
            "speedup measured against FP32 in the same run; passed: its thresholds met; reused: finished by an earlier run of the sweep.</p>"
            + '<div style="overflow-x:auto">' + _table(head, rows, 3) + "</div>"
            + (f"<details><summary>each variant's own report</summary><ul>{links}</ul></details>" if links else ""))


def _failures(d: dict[str, Any]) -> str:
    failed = [v for v in d.get("variants") or [] if isinstance(v, dict) and v.get("status") == "failed"]
    if not failed:
        return ""
    items = "".join(f"<li><b>{escape(str(v.get('name')))}</b>: {escape(str((v.get('error') or {}).get('type', 'error')))}: "
                    f"{escape(str((v.get('error') or {}).get('message', '')))} (log: <code>.logs/{escape(str(v.get('name')))}.log</code>)</li>" for v in failed)
    return f'<h2>Failed variants</h2><div class="failure"><ul>{items}</ul></div>'


def _reproduce(d: dict[str, Any]) -> str:
    lines = []
    command = d.get("command")
    if isinstance(command, list) and command:
        lines.append(f"<p>The command that ran (run it again with <code>--resume</code> to finish an interrupted sweep):</p>"
                     f"<pre>{escape(shlex.join(str(c) for c in command))}</pre>")
    grid = d.get("grid") or {}
    lines.append(f"<details><summary>the grid (axes and the base recipe)</summary>{_json(grid)}</details>")
    return "<h2>Reproduce</h2>" + "".join(lines)
