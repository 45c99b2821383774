"""trtcompress sweep on the zoo's Fashion CNN with real Fashion-MNIST: a sweep interrupted (Ctrl-C
to its process group) after its first variant resumes and skips what finished; the fronts are
exactly the variants no other variant (or FP32) beats, read back from each run's own report; the
page holds the fronts and their recipes and shows in headless Chromium with no console message."""
from __future__ import annotations

import json
import os
import re
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

import pytest

from sweep_support import DATA, ROOT, json_main as _json_main

from trtcompress.cli.main import main
from trtcompress.zoo import onnx_path
GRID = """
[base]
stages = [{stage = "quantize", target = "cpu"}]
calib_from_data = "split"
limit = 64

[grid]
calibration = ["entropy", "max"]
sparsity = [true]
"""
NAMES = ["calibration-entropy_sparsity-off", "calibration-entropy_sparsity-on", "calibration-max_sparsity-off", "calibration-max_sparsity-on"]


def _args(runs: Path, grid: Path, *more: str) -> list[str]:
    return ["sweep", str(onnx_path("fashion_cnn")), "--grid", str(grid), "--set", "sparsity=off,on", "--data", str(DATA),
            "--runs-dir", str(runs), "--name", "fashion", "--batch-sizes", "1", "--iterations", "10", "--rounds", "2", *more]


@pytest.fixture(scope="module")
def sweep(tmp_path_factory):
    """The sweep run in a process of its own, one variant at a time, interrupted once the first
    variant's report is written; then resumed here (--json): (runs dir, first run's reports, result)."""
    tmp = tmp_path_factory.mktemp("sweep")
    grid = tmp / "grid.toml"
    grid.write_text(GRID)
    runs = tmp / "runs"
    first = runs / "fashion" / NAMES[0] / "report.json"
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), str(ROOT / "tests"), os.environ.get("PYTHONPATH", "")]))
    proc = subprocess.Popen([sys.executable, "-m", "trtcompress.cli.main", *_args(runs, grid, "--jobs", "1")], env=env,
                            start_new_session=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not first.is_file() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGINT)  # Ctrl-C: the sweep and the variant running now
    _, err = proc.communicate(timeout=60)
    interrupted = {"code": proc.returncode, "stderr": err, "state": json.loads((runs / "fashion" / "sweep.json").read_text())}
    before = {n: (runs / "fashion" / n / "report.json").read_text() for n in NAMES if (runs / "fashion" / n / "report.json").is_file()}
    code, data = _json_main(_args(runs, grid, "--resume"))
    return runs / "fashion", interrupted, before, code, data


def test_an_interrupted_sweep_resumes_skipping_finished_variants(sweep):
    root, interrupted, before, code, data = sweep
    assert interrupted["code"] == 130, interrupted["stderr"][-2000:]
    assert interrupted["state"]["status"] == "interrupted"
    assert NAMES[0] in before and len(before) < len(NAMES)  # stopped part-way
    assert code == 0 and data["status"] == "completed"
    assert [v["name"] for v in data["variants"]] == NAMES
    for v in data["variants"]:
        assert v["status"] == "completed"
        assert v["reused"] == (v["name"] in before)
        report = (root / v["name"] / "report.json").read_text()
        if v["name"] in before:
            assert report == before[v["name"]]  # not run again
        assert (root / v["name"] / "recipe.toml").is_file() and (root / v["name"] / "report.html").is_file()
    # the run directories are the variants only: the shared stage cache and the logs are dot folders
    assert sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")) == NAMES
    assert (root / ".cache").is_dir() and (root / ".logs" / f"{NAMES[-1]}.log").is_file()


def test_variants_are_ordinary_compress_runs(sweep):
    root, *_ = sweep
    from trtcompress.job import CompressConfig
    from trtcompress.recipe import read_recipe

    for name in NAMES:
        config = CompressConfig.from_dict(read_recipe(root / name / "recipe.toml"))
        stages = [type(s).__name__ for s in config.stages]
        assert stages == (["SparsifyConfig", "QuantizeConfig"] if name.endswith("-on") else ["QuantizeConfig"])
        q = config.stages[-1]
        assert q.method == name.split("_")[0].split("-")[1] and q.target == "cpu"
        assert config.name == name and config.calib_from_data == "split" and config.limit == 64


def _dominated(p, others):
    return any(o[0] >= p[0] and o[1] <= p[1] and (o[0] > p[0] or o[1] < p[1]) for o in others)


def test_fronts_hold_exactly_the_undominated_points(sweep):
    root, _, _, _, data = sweep
    reports = {n: json.loads((root / n / "report.json").read_text()) for n in NAMES}
    acc = {n: r["compare"]["outputs"]["logits"]["top1_agreement"] for n, r in reports.items()}
    lat = {n: r["bench"]["results"]["1"]["compressed"]["p50_ms"] for n, r in reports.items()}
    size = {n: r["metrics"]["compression"]["weight_bytes_in_memory_compressed"] for n, r in reports.items()}
    acc["FP32"] = 1.0
    lat["FP32"] = statistics.median(r["bench"]["results"]["1"]["original"]["p50_ms"] for r in reports.values())
    size["FP32"] = reports[NAMES[0]]["metrics"]["compression"]["weight_bytes_in_memory_original"]
    assert any(acc[n] < 1.0 for n in NAMES)  # 2:4 costs accuracy: the fronts are a real choice
    for cost, values in (("latency", lat), ("size", size)):
        points = {n: (acc[n], values[n]) for n in acc}
        expected = {n for n, p in points.items() if not _dominated(p, [q for m, q in points.items() if m != n])}
        assert set(data["fronts"][cost]) == expected, cost
        assert [values[n] for n in data["fronts"][cost]] == sorted(values[n] for n in data["fronts"][cost])
    by_name = {v["name"]: v for v in data["variants"]}
    for n in NAMES:
        assert by_name[n]["accuracy"] == acc[n] and by_name[n]["latency_ms"] == lat[n] and by_name[n]["size_bytes"] == size[n]


def test_json_output_is_sweep_json(sweep):
    root, _, _, _, data = sweep
    assert json.loads((root / "sweep.json").read_text()) == data
    assert data["grid"]["axes"] == {"calibration": ["entropy", "max"], "sparsity": [False, True]}  # --set replaced the file's axis
    assert data["executor"]["kind"] == "local" and data["executor"]["jobs"] == 2


def test_the_page_holds_the_fronts_and_their_recipes(sweep):
    root, _, _, _, data = sweep
    page = (root / "sweep.html").read_text()
    assert set(re.findall(r'<svg [^>]*data-plot="([^"]+)"', page)) == {"sweep-front-latency", "sweep-front-size"}
    assert not re.search(r"<script|<link|<img|<iframe|@import|url\(", page, re.I) and "default-src 'none'" in page
    for cost in ("latency", "size"):
        svg = re.search(rf'<svg [^>]*data-plot="sweep-front-{cost}".*?</svg>', page, re.S).group(0)
        assert len(re.findall(r'<circle class="front"', svg)) == len(data["fronts"][cost])
        assert len(re.findall(r"<circle cx", svg)) == len(NAMES) + 1  # every variant and FP32
    for name in {n for f in data["fronts"].values() for n in f} - {"FP32"}:
        assert f"recipe of <b>{name}</b>" in page
    from trtcompress.report.sweep_page import render_sweep

    assert page == render_sweep(data)
    assert main(["report", str(root), "-o", str(root / "again.html")]) == 0
    assert (root / "again.html").read_text() == page


CHROMIUM = next((c for c in ("chromium", "chromium-browser") if __import__("shutil").which(c)), None)


@pytest.mark.skipif(CHROMIUM is None, reason="needs Debian's chromium (scripts/setup.sh installs it)")
def test_the_page_in_headless_chromium(sweep, tmp_path):
    root, *_ = sweep
    shot = tmp_path / "sweep.png"
    r = subprocess.run([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--enable-logging=stderr", "--v=0",
                        f"--user-data-dir={tmp_path / 'profile'}", f"--screenshot={shot}", "--window-size=1200,2400", "--dump-dom",
                        (root / "sweep.html").as_uri()], capture_output=True, text=True, timeout=90)
    assert r.returncode == 0, r.stderr[-2000:]
    assert [l for l in r.stderr.splitlines() if ":CONSOLE" in l] == []
    assert set(re.findall(r'<svg [^>]*data-plot="([^"]+)"', r.stdout)) == {"sweep-front-latency", "sweep-front-size"}
    assert shot.stat().st_size > 10_000


def test_an_existing_sweep_needs_resume_or_overwrite(sweep, capsys):
    root, *_ = sweep
    grid = root.parent.parent / "grid.toml"
    assert main(_args(root.parent, grid)) == 2
    assert "pass --resume" in capsys.readouterr().err


@pytest.mark.parametrize("argv, message", [
    (["--set", "calibraton=entropy"], "grid key 'calibraton' is not an axis"),
    (["--set", "quantize.methd=max"], "stage quantize has no option 'methd'"),
    (["--set", "sparsity=maybe"], "grid key 'sparsity': value 'maybe' must be on or off"),
    (["--set", "precision=fp16"], "grid key 'precision': value 'fp16' must be one of int8, fp32"),
    (["--set", "calibration=entropy,max"], "grid key 'calibration' applies to no variant"),
    (["--set", "name=a,b"], "the sweep sets name for every variant"),
    (["--set", "calibration=entropy", "--stages", "quantize", "--jobs", "-1"], "--jobs must be >= 1"),
])
def test_bad_grids_are_one_line_errors(tmp_path, argv, message):
    code, data = _json_main(["sweep", str(onnx_path("fashion_cnn")), "--runs-dir", str(tmp_path), *argv])
    assert code == 2 and message in data["error"]["message"] and "\n" not in data["error"]["message"]
    assert not any(tmp_path.iterdir())  # refused before anything was written


def test_grid_file_keys_are_checked(tmp_path):
    grid = tmp_path / "g.toml"
    grid.write_text('[grid]\ncalibration = ["max"]\n[extra]\nx = 1\n')
    code, data = _json_main(["sweep", str(onnx_path("fashion_cnn")), "--grid", str(grid), "--runs-dir", str(tmp_path)])
    assert code == 2 and "unknown key 'extra'" in data["error"]["message"]
    grid = tmp_path / "g.json"
    grid.write_text(json.dumps({"grid": {"precision": ["int8", "fp32"], "quantize.per_channel": [True, False], "bench.iterations": [5]}}))
    code, data = _json_main(["sweep", str(onnx_path("fashion_cnn")), "--grid", str(grid), "--dry-run"])
    assert code == 0
    # per_channel applies only where precision is int8: fp32 is one variant, not two
    assert [v["name"] for v in data["variants"]] == [
        "precision-int8_quantize.per_channel-on_bench.iterations-5", "precision-int8_quantize.per_channel-off_bench.iterations-5",
        "precision-fp32_bench.iterations-5"]
    assert [v["stages"] for v in data["variants"]] == [["quantize"], ["quantize"], []]


def test_ray_without_the_extra_names_it(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)
    code, data = _json_main(["sweep", str(onnx_path("fashion_cnn")), "--stages", "quantize", "--set", "calibration=max",
                             "--calib-from-data", "same", "--ray", "--runs-dir", str(tmp_path)])
    assert code == 2 and "trtcompress[ray]" in data["error"]["message"]


def test_a_failing_variant_fails_alone(tmp_path):
    """A variant whose benchmark cannot run (batch 2 on a model with a fixed batch of 1) is recorded
    with its error and its kept run directory (which --resume never takes for finished); the other
    variant completes; the sweep exits 1."""
    from trtc_support import tiny_classifier

    from trtcompress.job import CompressConfig
    from trtcompress.sweep.driver import finished_report

    model = tiny_classifier(tmp_path / "fixed.onnx", dynamic=False)
    grid = tmp_path / "grid.json"
    grid.write_text(json.dumps({"grid": {"bench.batch_sizes": [[1], [2]]}}))
    argv = ["sweep", str(model), "--grid", str(grid), "--stages", "sparsify", "--data", "random:2", "--iterations", "2", "--rounds", "1",
            "--runs-dir", str(tmp_path / "runs"), "--jobs", "1"]
    code, data = _json_main(argv)
    assert code == 1 and data["status"] == "completed"
    ok, bad = data["variants"]
    assert (ok["name"], ok["status"]) == ("bench.batch_sizes-1", "completed")
    assert (bad["name"], bad["status"]) == ("bench.batch_sizes-2", "failed") and "Expected: 1" in bad["error"]["message"]
    root = tmp_path / "runs" / "grid"
    assert json.loads((root / bad["name"] / "report.json").read_text())["status"] == "failed"  # compress kept what finished
    assert "Expected: 1" in (root / ".logs" / f"{bad['name']}.log").read_text()
    assert data["fronts"]["latency"] and bad["name"] not in data["fronts"]["latency"]
    assert "Failed variants" in (root / "sweep.html").read_text()
    plans = {v["name"]: v["recipe"] for v in data["variants"]}
    assert finished_report(root / ok["name"], CompressConfig.from_dict(plans[ok["name"]])) is not None
    assert finished_report(root / bad["name"], CompressConfig.from_dict(plans[bad["name"]])) is None
    assert finished_report(root / ok["name"], CompressConfig.from_dict({**plans[ok["name"]], "limit": 1})) is None  # another recipe
