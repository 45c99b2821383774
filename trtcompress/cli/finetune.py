"""``trtcompress finetune``: recover a compressed student's accuracy by distillation from the teacher."""
from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path

from ..errors import ConfigError

HELP = "distil a compressed student from its dense teacher, then export it to ONNX"


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = sub.add_parser("finetune", help=HELP, description=HELP + ". loss = alpha*CE + (1-alpha)*T^2*KL(teacher||student).")
    p.add_argument("--teacher", required=True, help="zoo:NAME (e.g. zoo:fashion_cnn) or a factory path/file.py:function / pkg.mod:function returning an nn.Module")
    g = p.add_mutually_exclusive_group(required=True)
    g.add_argument("--student", help="factory returning the student nn.Module (given the teacher if it takes an argument)")
    g.add_argument("--transform", help="derive the student from the teacher, e.g. lowrank:rule=flops,flop_fraction=0.5")
    p.add_argument("--data", required=True, help="training (inputs, labels) batches: fashion-mnist[:train[:LIMIT]], digits, or a factory path/file.py:function returning a DataLoader or iterable")
    p.add_argument("--eval-data", help="held-out batches for accuracy before/after (same forms as --data, e.g. fashion-mnist:test)")
    p.add_argument("-o", "--output", required=True, help="where to write the student as ONNX")
    p.add_argument("--report", help="where to write the JSON report (default: OUTPUT with .json)")
    p.add_argument("--config", help="a FinetuneConfig JSON file; flags below override it")
    t = p.add_argument_group("training")
    for name, typ, hlp in [
        ("alpha", float, "weight of the label loss (default 0.5)"),
        ("temperature", float, "distillation temperature T (default 4)"),
        ("epochs", int, "passes over the data (default 1)"),
        ("steps", int, "optimizer steps (overrides epochs)"),
        ("lr", float, "learning rate (default 1e-3)"),
        ("optimizer", str, "adam, adamw or sgd"),
        ("schedule", str, "constant or cosine"),
        ("weight-decay", float, "weight decay"),
        ("batch-size", int, "batch size of the built-in datasets (default 64)"),
        ("seed", int, "seed of shuffling and initialisation (default 0)"),
        ("checkpoint-dir", str, "write checkpoints here"),
        ("checkpoint-every", int, "steps between checkpoints (default 200)"),
        ("threads", int, "torch threads (0: default)"),
    ]:
        t.add_argument(f"--{name}", type=typ, default=None, help=hlp)
    t.add_argument("--resume", action="store_true", default=None, help="continue from the last checkpoint in --checkpoint-dir")
    t.add_argument("--no-progress", dest="progress", action="store_false", default=None, help="no progress bar")
    return p


def _config(args: argparse.Namespace):
    from ..finetune import FinetuneConfig

    base = FinetuneConfig()
    if args.config:
        path = Path(args.config)
        if not path.is_file():
            raise ConfigError(f"config file {path} not found")
        try:
            base = FinetuneConfig.from_json(path.read_text())
        except json.JSONDecodeError as e:
            raise ConfigError(f"config file {path} is not valid JSON ({e})") from e
    changes = {f.name: getattr(args, f.name) for f in dataclasses.fields(FinetuneConfig) if getattr(args, f.name, None) is not None}
    return base.replace(**changes)


def run(args: argparse.Namespace) -> int:
    from ..fileio import write_json
    from ..finetune import apply_transform, finetune, open_training_data
    from ..finetune.export import export_student_result
    from ..finetune.models import load_module

    config = _config(args)
    teacher = load_module(args.teacher, "teacher")
    data = open_training_data(args.data, config.batch_size, "train")
    eval_data = open_training_data(args.eval_data, 256, "test", shuffle=False) if args.eval_data else None
    example = next(iter(data))[0][:1]
    if args.transform:
        student, transform_report = apply_transform(args.transform, teacher, example)
    else:
        student, transform_report = load_module(args.student, "student", teacher), None
    result = finetune(student, teacher, data, config, eval_data=eval_data, log=print)
    exported = export_student_result(result.student, example, args.output)
    out = Path(exported.path)
    report = {"config": config.to_dict(), "teacher": args.teacher, "student": args.student or args.transform, "transform": transform_report, "finetune": result.report, "onnx": str(out), "export": exported.to_dict()}
    report_path = Path(args.report) if args.report else out.with_suffix(".json")
    write_json(report_path, report)
    r = result.report
    acc = ""
    if "student_accuracy_after" in r:
        acc = f"; accuracy teacher {r['teacher_accuracy']:.4f}, student {r['student_accuracy_before']:.4f} -> {r['student_accuracy_after']:.4f}"
    print(f"finetuned {r['steps']} steps in {r['seconds']:.1f} s{acc}")
    print(f"wrote {out} and {report_path}")
    return 0
