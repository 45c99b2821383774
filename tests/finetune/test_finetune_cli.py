"""``trtcompress finetune`` end to end on digits: student ONNX runs in ONNX Runtime; resume works."""
from __future__ import annotations

import argparse
import json
import textwrap

import numpy as np
import pytest

torch = pytest.importorskip("torch")
ort = pytest.importorskip("onnxruntime")

from trtcompress.cli import finetune as verb  # noqa: E402
from trtcompress.errors import ConfigError  # noqa: E402
from trtcompress.finetune import open_training_data  # noqa: E402


def _cli(argv):
    p = argparse.ArgumentParser()
    verb.add_parser(p.add_subparsers())
    return verb.run(p.parse_args(["finetune", *argv])).code


@pytest.fixture
def teacher_file(tmp_path, teacher):
    torch.save(teacher.state_dict(), tmp_path / "teacher.pt")
    f = tmp_path / "nets.py"
    f.write_text(textwrap.dedent(f"""
        import torch
        def teacher():
            m = torch.nn.Sequential(
                torch.nn.Flatten(), torch.nn.Linear(64, 128), torch.nn.ReLU(), torch.nn.Dropout(0.1),
                torch.nn.Linear(128, 128), torch.nn.ReLU(), torch.nn.Linear(128, 10))
            m.load_state_dict(torch.load({str(tmp_path / 'teacher.pt')!r}))
            return m.eval()
    """))
    return f


def test_finetune_verb_writes_onnx_and_report(tmp_path, teacher_file, teacher):
    out = tmp_path / "out" / "student.onnx"
    rc = _cli(["--teacher", f"{teacher_file}:teacher", "--transform", "lowrank:rule=flops,flop_fraction=0.3", "--data", "digits",
               "--eval-data", "digits:test", "--steps", "30", "--no-progress", "-o", str(out), "--threads", "1"])
    assert rc == 0 and out.is_file()
    report = json.loads(out.with_suffix(".json").read_text())
    assert report["finetune"]["steps"] == 30 and report["transform"]["factorised_flop_fraction"] <= 0.3
    # the exported student agrees with the accuracy measured in torch
    x, y = next(iter(open_training_data("digits:test", 397, shuffle=False)))
    logits = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"]).run(None, {"x": x.numpy()})[0]
    acc = float(np.mean(logits.argmax(-1) == y.numpy()))
    assert acc == pytest.approx(report["finetune"]["student_accuracy_after"], abs=1e-9)


def test_finetune_verb_config_file_and_resume(tmp_path, teacher_file):
    cfg = tmp_path / "ft.json"
    cfg.write_text(json.dumps({"steps": 6, "lr": 0.002, "progress": False, "threads": 1}))
    ck = tmp_path / "ck"
    args = ["--teacher", f"{teacher_file}:teacher", "--transform", "lowrank:rule=energy,energy=0.9", "--data", "digits", "--config", str(cfg), "--checkpoint-dir", str(ck)]
    assert _cli(args + ["-o", str(tmp_path / "a.onnx")]) == 0
    assert _cli(args + ["--steps", "10", "--resume", "-o", str(tmp_path / "b.onnx")]) == 0
    assert json.loads((tmp_path / "b.json").read_text())["finetune"]["steps"] == 10
    with pytest.raises(ConfigError, match="unknown"):
        _cli(["--teacher", f"{teacher_file}:teacher", "--transform", "lowrank:bogus=1", "--data", "digits", "-o", str(tmp_path / "c.onnx")])


def test_registered_verb_reports_user_errors_in_one_line(tmp_path, teacher_file, capsys):
    from trtcompress.cli.main import VERBS, main

    assert VERBS["finetune"] == "finetune"
    rc = main(["finetune", "--teacher", f"{teacher_file}:teacher", "--transform", "svd", "--data", "digits", "-o", str(tmp_path / "x.onnx"), "--no-progress"])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and "unknown student transform 'svd'" in err and len(err.splitlines()) == 1


def test_finetune_json_and_progress_lines(tmp_path, teacher_file, capfd):
    """--json: the report on stdout, the training progress as plain lines on stderr (not a terminal)."""
    from trtcompress.cli.main import main

    out = tmp_path / "s.onnx"
    capfd.readouterr()
    rc = main(["finetune", "--teacher", f"{teacher_file}:teacher", "--transform", "lowrank:rule=energy,energy=0.9", "--data", "digits",
               "--steps", "5", "--threads", "1", "-o", str(out), "--json"])
    stdout, err = capfd.readouterr()
    assert rc == 0, err
    doc = json.loads(stdout)
    assert doc["finetune"]["steps"] == 5 and doc["written"] == [str(out), str(out.with_suffix(".json"))]
    assert "\r" not in err and "finetune: done, 5/5 step in" in err and "loss=" in err
    assert "to ONNX" not in stdout
