"""What every verb prints: ``--json`` is one JSON document on stdout with the results, ``--quiet``
prints nothing on success, progress is plain lines off a terminal and one redrawn line on one."""
from __future__ import annotations

import json
import os
import pty
import select
import subprocess
import sys
from pathlib import Path

import pytest

from trtcompress.cli.main import VERBS, build_parser, main
from trtc_support import tiny_classifier

# verb -> (arguments after the verb; {m}: the tiny model, {d}: the test's folder), what the document must hold
JSON_CASES = {
    "inspect": (["{m}"], lambda d, p: d["summary"]["layers_with_constant_weights"] == 2 and len(d["layers"]) >= 2),
    "sparsify": (["{m}", "-o", "{d}/s.onnx", "--min-channels", "4"], lambda d, p: d["layers_pruned"] == 1 and d["written"] == [f"{p}/s.onnx"]),
    "lowrank": (["{m}", "-o", "{d}/l.onnx", "--rule", "energy", "--min-flop-saving", "0"], lambda d, p: d["params_before"] > 0 and "factorised" in d),
    "share": (["{m}", "-o", "{d}/sh.onnx", "--bits", "4", "--min-size", "16"], lambda d, p: d["layers_shared"] == 2 and d["sizes"]["packed_bytes"] > 0),
    "quantize": (["{m}", "-o", "{d}/q.onnx", "--calib", "random:8", "--sensitivity-samples", "0"],
                 lambda d, p: d["plan"]["quantized_nodes"] == 2 and d["written"] == [f"{p}/q.onnx", f"{p}/q.calib.json"]),
    "compare": (["{m}", "{m}", "--data", "random:4"], lambda d, p: d["passed"] is True and d["samples"] == 4 and "logits" in d["outputs"]),
    "bench": (["{m}", "--iterations", "4", "--rounds", "2"], lambda d, p: d["results"]["1"][f"{p}/tiny.onnx"]["p50_ms"] > 0),
    "debug": (["{m}", "{d}/q.onnx", "--data", "random:4"], lambda d, p: d["diverges"] is False and d["quantized_layers"] == 2),
    "build": (["{m}", "--dry-run", "--target-version", "10.3"], lambda d, p: d[0]["tensorrt"] == "10.3" and "trtexec" in d[0]["trtexec"]),
    "compress": (["{m}", "--stages", "sparsify", "--no-bench", "--runs-dir", "{d}/runs", "--name", "t"],
                 lambda d, p: d["status"] == "completed" and d["passed"] is True and "compression" in d["metrics"]),
    "pack": (["{d}/sh.onnx", "-o", "{d}/m.pack"], lambda d, p: d["artifact_bytes"] > 0 and d["written"] == [f"{p}/m.pack"]),
    "unpack": (["{d}/m.pack", "-o", "{d}/r.onnx"], lambda d, p: d["onnx_bytes"] == Path(f"{p}/sh.onnx").stat().st_size and d["checksums_verified"]),
    "report": (["{d}/runs/t"], lambda d, p: d["problems"] == [] and d["written"] == [f"{p}/runs/t/report.html"]),
}
# covered elsewhere: export and finetune need torch (tests/test_cli.py::test_export_cli,
# tests/finetune/test_finetune_cli.py); demo exports and runs EfficientNet-Lite0 (tests/test_demo.py,
# slow) and prints compress's report through the same Output; sweep runs variants in processes of
# their own (tests/sweep/test_sweep.py checks its --json document and one-line errors); refit needs
# TensorRT and a GPU (tests/trt/test_refit.py: its refusals here, the refit itself where they exist)
ELSEWHERE = {"export", "finetune", "demo", "sweep", "refit"}


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("cli_output")
    tiny_classifier(d / "tiny.onnx")
    return d


def _main(capfd, verb: str, argv: list[str]) -> tuple[int, str, str]:
    capfd.readouterr()
    code = main([verb, *argv])
    out, err = capfd.readouterr()
    return code, out, err


def test_every_verb_takes_json_and_quiet_before_or_after_it():
    assert set(JSON_CASES) | ELSEWHERE == set(VERBS)
    for verb in VERBS:
        sub = build_parser(verb)._subparsers._group_actions[0].choices[verb]
        flags = {o for a in sub._actions for o in a.option_strings}
        assert {"--json", "--quiet", "-q"} <= flags, verb
    args = build_parser("inspect").parse_args(["--json", "-q", "inspect", "m.onnx"])
    assert args.json and args.quiet


# in order: later verbs read what earlier ones wrote (q.onnx, sh.onnx, m.pack)
@pytest.mark.parametrize("verb", list(JSON_CASES))
def test_json_is_one_document_with_the_results(folder, capfd, verb):
    argv, holds = JSON_CASES[verb]
    code, out, err = _main(capfd, verb, [a.format(m=folder / "tiny.onnx", d=folder) for a in argv] + ["--json"])
    assert code == 0, err
    doc = json.loads(out)  # the whole of stdout is one document
    assert holds(doc, str(folder)), json.dumps(doc)[:2000]
    assert "\r" not in err  # stderr is not a terminal here: plain lines
    if verb == "quantize":
        assert "calibrating: done, 8/8 batch in" in err


def test_quiet_prints_nothing_and_keeps_exit_codes(folder, capfd, tmp_path):
    m = str(folder / "tiny.onnx")
    for verb, argv in (("quantize", [m, "-o", str(tmp_path / "q.onnx"), "--calib", "random:8", "--sensitivity-samples", "0"]),
                       ("bench", [m, "--iterations", "4", "--rounds", "2"]),
                       ("compress", [m, "--stages", "quantize", "--calib", "random:4", "--iterations", "4", "--runs-dir", str(tmp_path), "-q"])):
        code, out, err = _main(capfd, verb, [*argv, "--quiet"])
        assert (code, out, err) == (0, "", ""), verb
    other = tiny_classifier(tmp_path / "other.onnx", seed=3)
    code, out, err = _main(capfd, "compare", [m, str(other), "--min-cosine", "0.9999", "-q"])
    assert code == 1 and out == "" and err == ""  # a failed check keeps its status
    code, out, err = _main(capfd, "compare", [m, "missing.onnx", "-q"])
    assert code == 2 and out == "" and err.strip() == "trtcompress compare: error: model file not found: missing.onnx; check the path"


def test_json_errors_are_one_line_on_stderr_and_an_error_object_on_stdout(folder, capfd):
    code, out, err = _main(capfd, "compare", [str(folder / "tiny.onnx"), "missing.onnx", "--json"])
    assert code == 2 and err.strip().splitlines() == ["trtcompress compare: error: model file not found: missing.onnx; check the path"]
    assert json.loads(out) == {"verb": "compare", "error": {"type": "ModelError", "message": "model file not found: missing.onnx; check the path"}, "exit_code": 2}
    code, out, err = _main(capfd, "bench", [str(folder / "tiny.onnx"), "--batch-sizes", "a", "--json"])
    assert code == 2 and len(err.strip().splitlines()) == 1 and json.loads(out)["error"]["type"] == "UsageError"


def test_progress_on_a_terminal_is_one_redrawn_line(folder, tmp_path):
    """stderr on a pseudo-terminal: calibration redraws its line with \\r; stdout (a pipe) stays plain."""
    master, slave = pty.openpty()
    exe = Path(sys.executable).parent / "trtcompress"
    proc = subprocess.Popen([str(exe), "quantize", str(folder / "tiny.onnx"), "-o", str(tmp_path / "q.onnx"), "--calib", "random:32", "--batch", "1",
                             "--sensitivity-samples", "0"], stdout=subprocess.PIPE, stderr=slave, env={**os.environ, "COLUMNS": "200"})
    os.close(slave)
    err = b""
    while True:
        ready, _, _ = select.select([master], [], [], 60)
        if not ready:
            break
        try:
            chunk = os.read(master, 4096)
        except OSError:  # EIO: the child closed the terminal
            break
        if not chunk:
            break
        err += chunk
    os.close(master)
    out = proc.stdout.read().decode()
    assert proc.wait(60) == 0, err.decode(errors="replace")
    text = err.decode()
    assert "\rcalibrating: 0/32 batch, 0%" in text and "calibrating: done, 32/32 batch in" in text
    bar = [ln for ln in text.replace("\r\n", "\n").split("\n") if "calibrating" in ln]
    assert len(bar) == 1  # every frame on one terminal line
    assert "\r" not in out and out.startswith("normalized:") and "INT8 for tensorrt" in out
