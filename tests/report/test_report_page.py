"""report.html: written by every compress run, self-contained, re-rendered by ``trtcompress report``,
and shown by a real browser (headless Chromium, Debian's package) with every plot and no console message."""
from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from trtcompress.report import render

# the plots the fashion run's report supports (batch sizes 1 and 4; low-rank, 2:4, INT8)
EXPECTED_PLOTS = {"latency-batch-1", "latency-batch-4", "tradeoff-size", "tradeoff-speed", "quant-sqnr", "layer-sparsity", "layer-rank"}
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def _plots(html: str) -> set[str]:
    return set(re.findall(r'<svg [^>]*data-plot="([^"]+)"', html))


def test_every_run_writes_a_self_contained_page(fashion_run, fashion_report):
    page = (fashion_run / "report.html").read_text()
    assert page == render(fashion_report)  # from the report as written, nothing else
    assert _plots(page) == EXPECTED_PLOTS
    # nothing to fetch: no script, style sheet, image, frame or font from anywhere
    assert not re.search(r"<script|<link|<img|<iframe|<object|@import|url\(", page, re.I)
    assert set(re.findall(r"https?://[^\s\"'<>]+", page)) <= {"http://www.w3.org/2000/svg"}  # the SVG namespace, never fetched
    assert "default-src 'none'" in page  # and the browser is told to refuse any fetch
    # the seed's metrics and the reproduction details are on the page
    m = fashion_report["metrics"]
    assert f"{m['compression']['ratio_disk']:.2f}x" in page and f"{m['pruning_rate']['percent']:.2f}%" in page
    assert f"{fashion_report['compare']['outputs']['logits']['top1_agreement']:.2%}" in page
    assert "trtcompress compress " in page and fashion_report["versions"]["onnxruntime"] in page


def test_report_verb_rerenders(fashion_run, fashion_report, tmp_path, capsys):
    from trtcompress.cli.main import main

    run = tmp_path / "copy"
    run.mkdir()
    shutil.copy(fashion_run / "report.json", run / "report.json")
    assert main(["report", str(run)]) == 0
    assert (run / "report.html").read_text() == render(fashion_report)
    assert main(["report", str(run / "report.json"), "--check"]) == 0
    newer = dict(fashion_report, schema_version=99)
    (run / "report.json").write_text(json.dumps(newer))
    assert main(["report", str(run)]) == 2
    assert "schema v99" in capsys.readouterr().err
    assert main(["report", str(tmp_path / "nothing")]) == 2
    broken = dict(fashion_report)
    del broken["metrics"]
    (run / "report.json").write_text(json.dumps(broken))
    assert main(["report", str(run), "--check"]) == 1
    assert main(["report", str(run), "-o", str(tmp_path / "page.html")]) == 0  # a departing report still renders what it has
    assert "metrics" in capsys.readouterr().err and (tmp_path / "page.html").is_file()


def _chromium(page: Path, profile: Path, *args: str) -> subprocess.CompletedProcess:
    # --enable-logging=stderr prints every console message (errors, CSP refusals) as INFO:CONSOLE lines;
    # a profile of its own, so a browser the user has open does not hold its lock
    cmd = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--enable-logging=stderr", "--v=0",
           f"--user-data-dir={profile}", *args, page.as_uri()]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=90)


def _console(stderr: str) -> list[str]:
    return [l for l in stderr.splitlines() if ":CONSOLE" in l]


@pytest.mark.skipif(CHROMIUM is None, reason="needs Debian's chromium (scripts/setup.sh installs it)")
def test_page_in_headless_chromium(fashion_run, tmp_path):
    from PIL import Image

    page = fashion_run / "report.html"
    shot = tmp_path / "report.png"
    r = _chromium(page, tmp_path / "profile", f"--screenshot={shot}", "--window-size=1200,3400", "--dump-dom")  # one browser run: both
    assert r.returncode == 0, r.stderr[-2000:]
    assert _console(r.stderr) == []
    with Image.open(shot) as im:
        assert im.format == "PNG" and im.size == (1200, 3400)
        colours = im.convert("RGB").getcolors(maxcolors=1 << 16)
    assert colours is None or len(colours) > 50  # text and plots, not a blank page

    assert _plots(r.stdout) == EXPECTED_PLOTS  # as the browser parsed it
    for plot in EXPECTED_PLOTS:  # each plot holds marks, not only axes
        svg = re.search(rf'<svg [^>]*data-plot="{plot}".*?</svg>', r.stdout, re.S).group(0)
        assert len(re.findall(r"<(?:rect|circle|polyline)\b", svg)) >= 2, plot

    # the console check can fail: the same page with one external image is reported
    leaky = tmp_path / "leaky.html"
    leaky.write_text(page.read_text().replace("</main>", '<img src="https://example.invalid/x.png"></main>'))
    assert any("example.invalid" in l for l in _console(_chromium(leaky, tmp_path / "profile", "--dump-dom").stderr))


def test_a_failed_run_has_its_page(tmp_path):
    from trtc_support import tiny_classifier
    from trtcompress.benchmark import BenchConfig
    from trtcompress.errors import ConfigError
    from trtcompress.job import CompressConfig, compress, stage_config
    from trtcompress.report import validate

    fixed = tiny_classifier(tmp_path / "fixed.onnx", dynamic=False)  # batch 1 only: the benchmark at 2 fails
    cfg = CompressConfig(model=str(fixed), runs_dir=str(tmp_path / "runs"), name="late", data="random:2",
                         stages=(stage_config("sparsify", {"min_channels": 4}),), bench=BenchConfig(batch_sizes=(2,), iterations=2, rounds=1))
    with pytest.raises(ConfigError, match="fixed batch size"):
        compress(cfg)
    run = tmp_path / "runs" / "late"
    report = json.loads((run / "report.json").read_text())
    assert report["status"] == "failed" and validate(report) == []
    page = (run / "report.html").read_text()
    assert page == render(report) and "FAILED TO RUN" in page and "fixed batch size" in page


def test_accuracy_target_search_is_drawn(tmp_path):
    """The quantize stage's accuracy target: each evaluation of its search is a point of the
    sensitivity plot (calibration, target and evaluation data are disjoint files)."""
    from trtcompress.cli.main import main
    from trtcompress.zoo import onnx_path

    data = Path(__file__).resolve().parents[2] / "calibration" / "fashion_mnist"
    recipe = tmp_path / "recipe.json"
    recipe.write_text(json.dumps({"stages": [{"stage": "quantize", "accuracy_target": "cosine>=0.99999", "eval": str(data / "train-07.npz")}]}))
    assert main(["compress", str(onnx_path("fashion_cnn")), "--recipe", str(recipe), "--calib", str(data / "train-00.npz"),
                 "--data", str(data / "train-01.npz"), "--runs-dir", str(tmp_path), "--name", "target", "--no-bench"]) in (0, 1)
    report = json.loads((tmp_path / "target" / "report.json").read_text())
    evaluations = report["stages"][-1]["report"]["accuracy_target"]["evaluations"]
    svg = re.search(r'<svg [^>]*data-plot="quant-sensitivity".*?</svg>', (tmp_path / "target" / "report.html").read_text(), re.S).group(0)
    assert len(re.search(r'<polyline points="([^"]+)"', svg).group(1).split()) == len({e["kept_float"] for e in evaluations}) >= 2


def test_the_page_renders_whatever_a_report_holds(fashion_report):
    """Older reports, failed runs and other stages' reports may lack any section or hold other types."""
    for key in fashion_report:
        page = render({k: v for k, v in fashion_report.items() if k != key})
        assert page.startswith("<!DOCTYPE html>") and page.rstrip().endswith("</html>")
    odd = dict(fashion_report, stages=[{"name": "x", "report": None}, "y", {"name": "z", "report": {"layers": [1, {"rank": "low"}], "layer_error": "n/a"}}],
               bench={"results": {"1": {"original": {"samples_ms": ["a", float("nan"), 2.0]}}}}, metrics=None, compare={"outputs": {"o": None}})
    assert "Latency at batch 1" in render(odd)
    assert "<h1>" in render({}) and "<h1>" in render({"status": "failed", "failure": "text"})


def test_tradeoff_plots_take_any_number_of_variants(fashion_report):
    from trtcompress.report.plots import tradeoff_figures
    from trtcompress.report.variants import run_variants

    fp32, compressed = run_variants(fashion_report)
    assert fp32.accuracy == 1.0 and compressed.accuracy == fashion_report["compare"]["outputs"]["logits"]["top1_agreement"]
    assert compressed.size_bytes == fashion_report["metrics"]["compression"]["bytes_compressed"]
    assert compressed.latency_ms == fashion_report["bench"]["results"]["1"]["compressed"]["p50_ms"]
    variants = [fp32, compressed, *(v for r in ("a", "b") for v in run_variants(fashion_report, name=f"variant {r}")[1:])]
    figs = tradeoff_figures(variants)
    assert [f.plot for f in figs] == ["tradeoff-size", "tradeoff-speed"]
    assert all(len(re.findall(r"<circle ", f.svg)) == 4 and "variant b" in f.svg for f in figs)
