"""Train the Fashion-MNIST zoo models and rewrite the files shipped in ``trtcompress/zoo/weights``.

``python -m trtcompress.zoo.train [--model fashion_cnn|fashion_vit|fashion_mbv3|all]`` trains on the Debian
package's 60 000 training images with a fixed seed on the CPU (2 threads), evaluates on the
10 000 test images with torch and with ONNX Runtime on the exported file, and writes
``<name>.pt`` (state dict), ``<name>.onnx`` (opset 17, dynamic batch, input ``x``, output
``logits``, one file) and ``metrics.json``.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import time
import warnings
from pathlib import Path
from typing import Callable

import numpy as np

from .._optional import require
from ..fileio import atomic_path, write_json
from .fashion_mnist import fashion_mnist

__all__ = ["TrainSpec", "SPECS", "train", "fit", "export_onnx", "evaluate_torch", "evaluate_onnx", "main"]

WEIGHTS = Path(__file__).parent / "weights"
OPSET = 17


@dataclasses.dataclass(frozen=True)
class TrainSpec:
    """Hyper-parameters of one zoo model (the recipe that produced the shipped weights)."""

    epochs: int
    batch_size: int
    lr: float
    weight_decay: float
    seed: int = 0
    augment: bool = False  # random horizontal flip + 2-pixel shift


SPECS = {
    "fashion_cnn": TrainSpec(epochs=2, batch_size=128, lr=3e-3, weight_decay=5e-4),
    "fashion_vit": TrainSpec(epochs=6, batch_size=128, lr=2e-3, weight_decay=0.05),
    # one epoch keeps training under two minutes on one idle core (~105 s of CPU, measured
    # 2026-12-03): it serves INT8 regression tests,
    # which need trained weights (agreement with FP32 on random weights means little), not a record
    "fashion_mbv3": TrainSpec(epochs=1, batch_size=128, lr=4e-3, weight_decay=1e-4),
}


def train(name: str, spec: TrainSpec | None = None, threads: int = 2, log: Callable[[str], None] = print, limit: int | None = None):
    """Train ``name`` from scratch (the recipe of the shipped weights); returns the module in eval mode.

    ``limit`` trains on the first N training images only (for quick checks).
    """
    torch = require("torch", "training the zoo models")
    from .nets import NETS

    spec = spec or SPECS[name]
    torch.manual_seed(spec.seed)  # the initial weights
    return fit(NETS[name](), spec, threads=threads, log=log, limit=limit, name=name)


def fit(
    model,
    spec: TrainSpec,
    threads: int = 2,
    log: Callable[[str], None] = print,
    limit: int | None = None,
    loss: Callable | None = None,
    after_step: Callable | None = None,
    name: str = "model",
):
    """Train ``model`` (an nn.Module) on Fashion-MNIST training images; returns it in eval mode.

    Also the fine-tuning loop for compressed models: ``loss(logits, x, y) -> scalar tensor``
    replaces label-smoothed cross entropy (e.g. distillation from the dense model), and
    ``after_step(model)`` runs after every optimiser step (e.g. re-applying 2:4 masks).
    Deterministic for a given seed, torch version and thread count; the process's torch thread
    count and determinism setting are restored afterwards.
    """
    torch = require("torch", "training the zoo models")
    old_threads, old_det = torch.get_num_threads(), torch.are_deterministic_algorithms_enabled()
    torch.set_num_threads(threads)
    torch.use_deterministic_algorithms(True)
    try:
        return _fit(torch, model, spec, log, limit, loss, after_step, name)
    finally:
        torch.set_num_threads(old_threads)
        torch.use_deterministic_algorithms(old_det)


def _fit(torch, model, spec, log, limit, loss, after_step, name):
    x, y = fashion_mnist("train", limit=limit)
    x, y = torch.from_numpy(x), torch.from_numpy(y)
    decay = [p for n, p in model.named_parameters() if p.ndim > 1 and "pos" not in n]
    other = [p for n, p in model.named_parameters() if not (p.ndim > 1 and "pos" not in n)]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": spec.weight_decay}, {"params": other, "weight_decay": 0.0}], lr=spec.lr)
    steps = spec.epochs * -(-len(x) // spec.batch_size)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=spec.lr, total_steps=steps, pct_start=0.15)
    gen = torch.Generator().manual_seed(spec.seed)
    ce = torch.nn.CrossEntropyLoss(label_smoothing=0.05)
    loss_fn = loss or (lambda logits, xb, yb: ce(logits, yb))
    start = time.time()
    for epoch in range(spec.epochs):
        model.train()
        order = torch.randperm(len(x), generator=gen)
        total = 0.0
        for i in range(0, len(x), spec.batch_size):
            idx = order[i : i + spec.batch_size]
            xb, yb = x[idx], y[idx]
            if spec.augment:
                xb = _augment(torch, xb, gen)
            value = loss_fn(model(xb), xb, yb)
            opt.zero_grad(set_to_none=True)
            value.backward()
            opt.step()
            sched.step()
            if after_step is not None:
                after_step(model)
            total += float(value.detach()) * len(idx)
            step = i // spec.batch_size + 1
            if step % 100 == 0:
                log(f"{name}: epoch {epoch + 1} step {step} loss {float(value.detach()):.3f} ({time.time() - start:.0f} s)")
        log(f"{name}: epoch {epoch + 1}/{spec.epochs} loss {total / len(x):.4f} ({time.time() - start:.0f} s)")
    return model.eval()


def _augment(torch, xb, gen):
    flip = torch.rand(len(xb), generator=gen) < 0.5
    xb = torch.where(flip[:, None, None, None], xb.flip(-1), xb)
    dx, dy = (int(v) for v in torch.randint(-2, 3, (2,), generator=gen))
    return torch.roll(xb, shifts=(dy, dx), dims=(-2, -1))


def evaluate_torch(model, images: np.ndarray, labels: np.ndarray, batch_size: int = 1000) -> float:
    """Top-1 accuracy of a torch module."""
    torch = require("torch", "evaluating a torch model")
    correct = 0
    with torch.no_grad():
        for i in range(0, len(images), batch_size):
            pred = model(torch.from_numpy(images[i : i + batch_size])).argmax(1).numpy()
            correct += int((pred == labels[i : i + batch_size]).sum())
    return correct / len(images)


def evaluate_onnx(path: str | Path, images: np.ndarray, labels: np.ndarray, batch_size: int = 1000) -> float:
    """Top-1 accuracy of an ONNX file under ONNX Runtime (CPU)."""
    from ..sessions import SessionConfig, open_session

    sess = open_session(path, SessionConfig(threads=2))
    correct = 0
    for i in range(0, len(images), batch_size):
        (logits,) = sess.run(["logits"], {"x": images[i : i + batch_size]})
        correct += int((logits.argmax(1) == labels[i : i + batch_size]).sum())
    return correct / len(images)


def export_onnx(model, path: str | Path) -> Path:
    """Export with BatchNorm folded into the convs: opset 17, batch dimension named ``batch``."""
    torch = require("torch", "exporting the zoo models")
    onnx = require("onnx", "exporting the zoo models")
    model = _fold_bn(model)
    example = torch.zeros(2, 1, 28, 28)
    # the TorchScript exporter: at opset 17 the dynamo exporter's version conversion fails for
    # these models (it falls back to opset 18), and this one folds the graph to plain ONNX ops
    with atomic_path(path, suffix=".onnx") as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.onnx.export(
            model, (example,), str(tmp), input_names=["x"], output_names=["logits"], opset_version=OPSET,
            dynamic_axes={"x": {0: "batch"}, "logits": {0: "batch"}}, dynamo=False, do_constant_folding=True,
        )
        m = _drop_identities(onnx.load(str(tmp)))
        m.producer_name, m.doc_string = "trtcompress.zoo.train", f"{type(model).__name__} trained on Fashion-MNIST"
        onnx.checker.check_model(m, full_check=True)
        onnx.save(m, str(tmp))
    return Path(path)


def _drop_identities(model):
    """Remove Identity nodes (left by folded BatchNorm and Dropout) by rewiring their consumers."""
    graph = model.graph
    outputs = {o.name for o in graph.output}
    rename = {}
    keep = []
    for node in graph.node:
        if node.op_type == "Identity" and node.output[0] not in outputs:
            rename[node.output[0]] = rename.get(node.input[0], node.input[0])
        else:
            keep.append(node)
    for node in keep:
        for i, name in enumerate(node.input):
            if name in rename:
                node.input[i] = rename[name]
    del graph.node[:]
    graph.node.extend(keep)
    return model


def _fold_bn(model):
    """A copy of ``model`` with every Conv2d -> BatchNorm2d pair fused (eval-mode statistics)."""
    import copy

    torch = require("torch", "exporting the zoo models")
    from torch.nn.utils.fusion import fuse_conv_bn_eval

    model = copy.deepcopy(model).eval()
    for module in model.modules():
        if isinstance(module, torch.nn.Sequential):
            children = list(module.named_children())
            for (na, a), (nb, b) in zip(children, children[1:]):
                if isinstance(a, torch.nn.Conv2d) and isinstance(b, torch.nn.BatchNorm2d):
                    setattr(module, na, fuse_conv_bn_eval(a, b))
                    setattr(module, nb, torch.nn.Identity())
    return model


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m trtcompress.zoo.train", description=__doc__.splitlines()[0])
    parser.add_argument("--model", choices=[*SPECS, "all"], default="all")
    parser.add_argument("--out", type=Path, default=WEIGHTS, help="folder for .pt, .onnx and metrics.json (default: the package's)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--export-only", action="store_true", help="re-export and re-evaluate the existing .pt files, no training")
    args = parser.parse_args(argv)
    torch = require("torch", "training the zoo models")
    names = list(SPECS) if args.model == "all" else [args.model]
    metrics_path = args.out / "metrics.json"
    metrics = json.loads(metrics_path.read_text()) if metrics_path.exists() else {}
    test_x, test_y = fashion_mnist("test")
    for name in names:
        torch.set_num_threads(args.threads)
        if args.export_only:
            from .nets import NETS

            model = NETS[name]()
            model.load_state_dict(torch.load(args.out / f"{name}.pt", map_location="cpu", weights_only=True))
            model.eval()
            seconds = metrics.get(name, {}).get("train_seconds")
        else:
            start = time.time()
            model = train(name, threads=args.threads)
            seconds = round(time.time() - start, 1)
            with atomic_path(args.out / f"{name}.pt", suffix=".pt") as tmp:
                torch.save(model.state_dict(), tmp)
        onnx_file = export_onnx(model, args.out / f"{name}.onnx")
        metrics[name] = {
            "test_accuracy_torch": evaluate_torch(model, test_x, test_y),
            "test_accuracy_onnxruntime": evaluate_onnx(onnx_file, test_x, test_y),
            "parameters": sum(p.numel() for p in model.parameters()),
            "train_seconds": seconds,
            "threads": args.threads,
            "recipe": dataclasses.asdict(SPECS[name]),
            "torch": torch.__version__,
        }
        print(f"{name}: {json.dumps(metrics[name])}")
    write_json(metrics_path, metrics)
    for path in args.out.iterdir():  # temporary files are created private; shipped files are not
        path.chmod(0o644)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
