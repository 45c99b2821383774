"""``trtcompress finetune``: recover a compressed student's accuracy by distillation from the teacher."""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from ..errors import ConfigError
from .common import Output, add_config_args, config_from_args, log

HELP = "distil a compressed student from its dense teacher, then export it to ONNX"


FIELD_HELP = {
    "alpha": "weight of the label loss",
    "temperature": "distillation temperature T",
    "epochs": "passes over the data",
    "steps": "optimizer steps (overrides epochs)",
    "lr": "learning rate",
    "optimizer": "optimizer",
    "momentum": "SGD momentum",
    "weight_decay": "weight decay",
    "schedule": "learning-rate schedule",
    "batch_size": "batch size of the built-in datasets",
    "seed": "seed of shuffling and initialisation",
    "checkpoint_dir": "write checkpoints here",
    "checkpoint_every": "steps between checkpoints",
    "resume": "continue from the last checkpoint in --checkpoint-dir",
    "progress": "training progress on stderr (one redrawn line on a terminal, plain lines otherwise)",
    "threads": "torch threads (0: default)",
    "history_every": "steps averaged into one point of the loss history",
}


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    from ..distributed.ray_train import RayTrainOptions
    from ..finetune.config import OPTIMIZERS, SCHEDULES, FinetuneConfig
    from .ray_arg import TRAIN_HELP, add_ray_arg

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
    add_config_args(t, FinetuneConfig, help=FIELD_HELP, choices={"optimizer": OPTIMIZERS, "schedule": SCHEDULES})
    r = p.add_argument_group("Ray Train")
    add_ray_arg(r, TRAIN_HELP)
    r.add_argument("--workers", type=int, default=None, metavar="N", help=f"with --ray: DDP workers, one CPU each (default {RayTrainOptions.workers})")
    r.add_argument("--max-failures", type=int, default=None, metavar="N",
                   help="with --ray: restarts of the worker group after a worker dies; with --checkpoint-dir a restart resumes from the last checkpoint (default 0)")
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
    return config_from_args(args, FinetuneConfig, base=base)


def _ray_options(args: argparse.Namespace):
    """Ray Train options from --ray/--workers, or None (local); refuses a missing extra before any work."""
    from ..distributed import check_ray_train
    from ..distributed.ray_train import RayTrainOptions

    if args.ray is None:
        if args.workers is not None or args.max_failures is not None:
            raise ConfigError("--workers and --max-failures set the Ray Train run: give --ray [ADDRESS] too")
        return None
    check_ray_train("finetune --ray")
    given = {"workers": args.workers, "max_failures": args.max_failures}
    return RayTrainOptions(address=args.ray, **{k: v for k, v in given.items() if v is not None})


def run(args: argparse.Namespace) -> Output:
    from ..fileio import write_json
    from ..finetune import finetune
    from ..finetune.export import export_student_result
    from ..finetune.jobs import SpecJob

    config = _config(args)
    ray_options = _ray_options(args)
    job = SpecJob(teacher=args.teacher, data=args.data, batch_size=config.batch_size, student=args.student, transform=args.transform, eval_data=args.eval_data)
    parts = job.build()
    student, example, transform_report = parts.student, parts.example, parts.built
    if ray_options is not None:
        from ..distributed.ray_train import ray_finetune

        # rank 0 evaluates before and after; the driver's own evaluation data stays unused
        result = ray_finetune(job.absolute(), student, config, ray_options, log=log)
    else:
        result = finetune(student, parts.teacher, parts.data, config, eval_data=parts.eval_data, log=log)
    exported = export_student_result(result.student, example, args.output)
    out = Path(exported.path)
    report = {"config": config.to_dict(), "teacher": args.teacher, "student": args.student or args.transform, "transform": transform_report, "finetune": result.report, "onnx": str(out), "export": exported.to_dict()}
    report_path = Path(args.report) if args.report else out.with_suffix(".json")
    write_json(report_path, report)
    return Output({**report, "written": [str(out), str(report_path)]}, lambda: _summary(result.report, out, report_path))


def _summary(r: dict, out: Path, report_path: Path) -> str:
    acc = ""
    if "student_accuracy_after" in r:
        acc = f"; accuracy teacher {r['teacher_accuracy']:.4f}, student {r['student_accuracy_before']:.4f} -> {r['student_accuracy_after']:.4f}"
    return f"finetuned {r['steps']} steps in {r['seconds']:.1f} s{acc}\nwrote {out} and {report_path}"
