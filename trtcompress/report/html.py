"""``report.html``: one self-contained page from ``report.json``.

Inline CSS and inline SVG only: no script, no font, no image or style sheet from anywhere, so the
page opens offline and as an e-mail attachment. Its Content-Security-Policy forbids every fetch and
every script, so a browser reports (in its console) anything that would have tried. Sections the
run did not produce are left out; a failed run's page leads with its error.
"""
from __future__ import annotations

import json
import os
import shlex
from html import escape
from pathlib import Path
from typing import Any, Iterable, Sequence

from ..fileio import write_text
from . import plots
from .variants import Variant, accuracy_of, run_variants

__all__ = ["render", "write_html", "PAGE_NAME"]

PAGE_NAME = "report.html"
_CSP = "default-src 'none'; style-src 'unsafe-inline'; img-src data:"
_DETAILS_CHARS = 60_000  # a stage report shown on the page is cut here (report.json has it all)
_CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:0;background:#f6f7f9;color:#1d2330;line-height:1.45}
main{max-width:1120px;margin:0 auto;padding:20px 28px 60px}
h1{font-size:1.6em;margin:.2em 0}h2{font-size:1.2em;margin:1.6em 0 .5em;border-bottom:1px solid #d8dce3;padding-bottom:4px}
.sub{color:#5b6475;font-size:.92em}
.badge{display:inline-block;padding:2px 10px;border-radius:12px;font-weight:600;font-size:.85em;color:#fff;vertical-align:middle}
.pass{background:#1a7f37}.fail{background:#cf222e}.warn{background:#9a6700}
.cards{display:grid;grid-template-columns:repeat(auto-fill,minmax(200px,1fr));gap:12px}
.card{background:#fff;border:1px solid #d8dce3;border-radius:8px;padding:10px 14px}
.card .k{color:#5b6475;font-size:.85em}.card .v{font-size:1.5em;font-weight:600}.card .d{color:#5b6475;font-size:.8em}
table{border-collapse:collapse;background:#fff;font-size:.9em;margin:6px 0}
th,td{border:1px solid #d8dce3;padding:4px 9px;text-align:left}td.n{text-align:right;font-variant-numeric:tabular-nums}
th{background:#eef0f4}
figure{background:#fff;border:1px solid #d8dce3;border-radius:8px;margin:12px 12px 0 0;padding:10px;display:inline-block;vertical-align:top;width:min-content;max-width:100%;overflow-x:auto}
figcaption{color:#5b6475;font-size:.85em;margin-top:4px}
.notes li{margin:3px 0}.failure{background:#ffebe9;border:1px solid #cf222e;border-radius:8px;padding:10px 14px}
pre{background:#fff;border:1px solid #d8dce3;border-radius:6px;padding:8px 10px;overflow-x:auto;font-size:.82em;white-space:pre-wrap;word-break:break-all}
details{margin:4px 0}summary{cursor:pointer}
"""


def write_html(run_dir: str | os.PathLike, report: dict[str, Any], variants: Sequence[Variant] | None = None) -> Path:
    """Write ``run_dir/report.html`` for ``report`` (atomically, as every file of a run)."""
    return write_text(Path(run_dir) / PAGE_NAME, render(report, variants))


def render(report: dict[str, Any], variants: Sequence[Variant] | None = None) -> str:
    """The page for ``report``; ``variants`` default to the run's FP32 baseline and compressed model."""
    config = report.get("config") or {}
    name = config.get("name") or Path(str(config.get("model", "run"))).stem
    variants = list(variants) if variants is not None else run_variants(report)
    body = [_header(report, name), _failure(report), _headline(report), _notes(report), _accuracy(report), _latency(report),
            _tradeoffs(variants), _layers(report), _finetune(report), _stages(report), _reproduce(report)]
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f'<meta http-equiv="Content-Security-Policy" content="{_CSP}">'
            '<meta name="viewport" content="width=device-width, initial-scale=1">'
            f"<title>trtcompress report: {escape(str(name))}</title><style>{_CSS}</style></head>\n"
            f"<body><main>\n{''.join(b for b in body if b)}\n</main></body></html>\n")


# -- formatting ------------------------------------------------------------------------------------

def _f(v: Any, spec: str = ".3g", suffix: str = "") -> str:
    if not isinstance(v, (int, float)) or isinstance(v, bool):
        return "n/a"
    try:
        return f"{v:{spec}}{suffix}"
    except ValueError:  # an integer format given a float
        return f"{v:.4g}{suffix}"


def _table(head: Sequence[str], rows: Iterable[Sequence[Any]], numeric_from: int = 1) -> str:
    h = "".join(f"<th>{escape(c)}</th>" for c in head)
    body = "".join("<tr>" + "".join(f'<td{" class=n" if i >= numeric_from else ""}>{escape(str(c))}</td>' for i, c in enumerate(r)) + "</tr>" for r in rows)
    return f"<table><thead><tr>{h}</tr></thead><tbody>{body}</tbody></table>"


def _figures(figs: Sequence[plots.Figure]) -> str:
    return "".join(f'<figure id="fig-{escape(f.plot)}">{f.svg}<figcaption>{escape(f.caption)}</figcaption></figure>' for f in figs)


def _card(key: str, value: str, detail: str = "") -> str:
    return f'<div class="card"><div class="k">{escape(key)}</div><div class="v">{escape(value)}</div><div class="d">{escape(detail)}</div></div>'


def _json(obj: Any) -> str:
    text = json.dumps(obj, indent=2, default=str)
    if len(text) > _DETAILS_CHARS:
        text = text[:_DETAILS_CHARS] + f"\n... ({len(text) - _DETAILS_CHARS:,} more characters in report.json)"
    return f"<pre>{escape(text)}</pre>"


# -- sections ----------------------------------------------------------------------------------------

def _header(r: dict[str, Any], name: str) -> str:
    config = r.get("config") or {}
    status = r.get("status", "unknown")
    if status == "failed":
        badge = '<span class="badge fail">FAILED TO RUN</span>'
    elif r.get("passed") is True:
        badge = '<span class="badge pass">PASSED</span>'
    elif r.get("passed") is False:
        badge = '<span class="badge fail">FAILED THRESHOLDS</span>'
    else:
        badge = f'<span class="badge warn">{escape(str(status))}</span>'
    stages = " → ".join(str(s.get("name")) for s in r.get("stages") or [] if isinstance(s, dict)) or "none"
    return (f"<header><h1>{escape(str(name))} {badge}</h1>"
            f'<div class="sub">model <code>{escape(str(config.get("model", "?")))}</code> · stages {escape(stages)} · '
            f'{escape(str(r.get("created", "")))} · trtcompress {escape(str(r.get("trtcompress", "?")))} · report schema v{escape(str(r.get("schema_version", "?")))}</div></header>')


def _failure(r: dict[str, Any]) -> str:
    f = r.get("failure")
    if not isinstance(f, dict):
        return ""
    return (f'<h2>Failure</h2><div class="failure"><b>{escape(str(f.get("error", "error")))}</b> in '
            f'<b>{escape(str(f.get("stage")))}</b>: {escape(str(f.get("message", "")))}<br>The run directory keeps what finished.</div>')


def _headline(r: dict[str, Any]) -> str:
    m = r.get("metrics") if isinstance(r.get("metrics"), dict) else {}
    c = m.get("compression") or {}
    pr = m.get("pruning_rate") or {}
    q = m.get("quantization_error") or {}
    acc, metric, output = accuracy_of(r)
    bench = (r.get("bench") or {}).get("speedup_vs_first") or {}
    first = next(iter(bench), None)
    cards = [] if not m else [
        _card("compression ratio (disk)", _f(c.get("ratio_disk"), ".2f", "x"), f"{_f(c.get('bytes_original'), ',')} → {_f(c.get('bytes_compressed'), ',')} bytes"),
        _card("compression (non-zero params)", _f(c.get("ratio_nonzero_parameters"), ".2f", "x"), f"parameters {_f(c.get('ratio_parameters'), '.2f', 'x')}"),
        *([_card("compression ratio (shipped)", _f(c.get("ratio_packed"), ".2f", "x"), f"packed artifact {_f(c.get('bytes_packed'), ',')} bytes")]
          if c.get("bytes_packed") is not None else []),
        *([_card("weights in memory", _f(c.get("ratio_in_memory"), ".2f", "x"),
                 f"{_f(c.get('weight_bytes_in_memory_original'), ',')} → {_f(c.get('weight_bytes_in_memory_compressed'), ',')} bytes"
                 + (f"; engine {_f(c.get('bytes_engine'), ',')} bytes" if c.get("bytes_engine") is not None else ""))]
          if c.get("ratio_in_memory") is not None else []),
        _card("speedup ratio", _f(m.get("speedup"), ".2f", "x"), f"p50 latency, batch {first}, same run" if first else "no benchmark run"),
        _card("pruning rate", _f(pr.get("percent"), ".2f", "%"), f"{_f(pr.get('pruned'), ',')} of {_f(pr.get('total'), ',')} parameters"),
        _card("quantization error", _f(q.get("max_abs"), ".3g"), f"max abs at the outputs; mean {_f(q.get('mean_abs'), '.3g')}"),
        _card(metric, _f(acc, ".2%") if acc is not None else "n/a", f"output {output}, {_f((r.get('compare') or {}).get('samples'), 'd')} samples" if output else ""),
    ]
    # a stage's own final figure (the trainer's: the mean of the last steps) before its curve's last point
    losses = [(name, rep["final_loss"] if plots.number(rep.get("final_loss")) is not None else curves[0].ys[-1])
              for name, rep in plots.stage_reports(r) if (curves := plots.loss_curves(rep))]
    if losses:
        cards.append(_card("final distillation loss", _f(losses[-1][1], ".4g"), f"stage {losses[-1][0]}"))
    if not cards:
        return ""
    return "<h2>Headline</h2><div class=\"cards\">" + "".join(cards) + "</div>"


def _notes(r: dict[str, Any]) -> str:
    notes = [n for n in r.get("notes") or [] if isinstance(n, str)]
    if not notes:
        return ""
    return "<h2>Notes</h2><ul class=\"notes\">" + "".join(f"<li>{escape(n)}</li>" for n in notes) + "</ul>"


def _accuracy(r: dict[str, Any]) -> str:
    cmp = r.get("compare")
    if not isinstance(cmp, dict):
        return ""
    rows = []
    for name, o in (cmp.get("outputs") or {}).items():
        if not isinstance(o, dict):
            continue
        thresholds = ", ".join(f"{k} {v}" for k, v in (o.get("thresholds") or {}).items()) or "none"
        rows.append([name, o.get("kind", "?"), _f(o.get("top1_agreement"), ".2%"), _f(o.get("cosine_mean"), ".5f"), _f(o.get("cosine_min"), ".4f"),
                     _f(o.get("max_abs"), ".3g"), _f(o.get("mean_abs"), ".3g"), thresholds])
    fails = "".join(f"<li>{escape(f)}</li>" for f in cmp.get("failures") or [])
    verdict = f"<p>Failing checks:</p><ul>{fails}</ul>" if fails else "<p>Every output met its thresholds.</p>"
    data = r.get("data_split") or {}
    split = f" Calibration and evaluation data: {escape(str(data.get('mode')))}." if data else ""
    return (f"<h2>Accuracy against FP32</h2><p class=\"sub\">The compressed model against the FP32 baseline on "
            f"{escape(_f(cmp.get('samples'), 'd'))} evaluation samples.{split}</p>"
            + _table(["output", "kind", "top-1 agreement", "cosine mean", "cosine min", "max abs error", "mean abs error", "thresholds"], rows, 2) + verdict)


def _latency(r: dict[str, Any]) -> str:
    b = r.get("bench")
    if not isinstance(b, dict):
        return "<h2>Latency</h2><p>No benchmark ran (--skip-bench).</p>" if r.get("status") == "completed" else ""
    speed = b.get("speedup_vs_first") or {}
    rows = []
    for batch, models in (b.get("results") or {}).items():
        for label, s in (models or {}).items():
            if isinstance(s, dict):
                rows.append([batch, label, _f(s.get("p50_ms"), ".3f"), _f(s.get("p90_ms"), ".3f"), _f(s.get("p99_ms"), ".3f"), _f(s.get("mean_ms"), ".3f"),
                             _f(s.get("throughput_per_s"), ".1f"), _f((speed.get(batch) or {}).get(label), ".2f", "x"), _f(s.get("iterations"), "d")])
    table = _table(["batch", "model", "p50 ms", "p90 ms", "p99 ms", "mean ms", "samples/s", "speedup (p50)", "runs"], rows, 2)
    return (f"<h2>Latency</h2><p class=\"sub\">Backend {escape(str(b.get('backend', '?')))}, {escape(str(b.get('threads', 0) or 'default'))} threads; "
            "both models measured in interleaved rounds in the same run.</p>" + table + _figures(plots.latency_figures(r)))


def _tradeoffs(variants: Sequence[Variant]) -> str:
    figs = plots.tradeoff_figures(variants)
    return "<h2>Trade-offs</h2>" + _figures(figs) if figs else ""


def _layers(r: dict[str, Any]) -> str:
    figs = plots.quantization_figures(r) + plots.sparsity_figures(r) + plots.rank_figures(r)
    return "<h2>Per layer</h2>" + _figures(figs) if figs else ""


def _finetune(r: dict[str, Any]) -> str:
    figs = plots.loss_figures(r)
    return "<h2>Fine-tuning</h2>" + _figures(figs) if figs else ""


def _stages(r: dict[str, Any]) -> str:
    stages = [s for s in r.get("stages") or [] if isinstance(s, dict)]
    if not stages:
        return ""
    rows = "".join(
        f"<details><summary><b>{escape(str(s.get('name')))}</b>: {_f(s.get('seconds'), '.2f')} s"
        f"{' · ' + str(len(s.get('warnings') or [])) + ' warning(s)' if s.get('warnings') else ''}</summary>{_json(s.get('report'))}</details>"
        for s in stages)
    return "<h2>Stages</h2>" + rows


def _reproduce(r: dict[str, Any]) -> str:
    config = r.get("config") or {}
    command = r.get("command")
    lines = []
    if isinstance(command, list) and command:
        lines.append(f"<p>The command that ran:</p><pre>{escape(shlex.join(str(c) for c in command))}</pre>")
    recipe = r.get("recipe") if isinstance(r.get("recipe"), dict) else config
    lines.append(f"<p>The same job from its resolved configuration (saved as <code>recipe.json</code>):</p>"
                 f"<pre>{escape(shlex.join(['trtcompress', 'compress', str(config.get('model', 'MODEL')), '--recipe', 'recipe.json']))}</pre>"
                 f"<details><summary>recipe.json</summary>{_json(recipe)}</details>")
    versions = r.get("versions") or {}
    host = r.get("host") or {}
    if versions:
        lines.append(_table(["package", "version"], sorted(versions.items()), 1))
    if host:
        lines.append(f"<p class=\"sub\">Host: {escape(', '.join(f'{k} {v}' for k, v in host.items()))}.</p>")
    return "<h2>Reproduce</h2>" + "".join(lines)
