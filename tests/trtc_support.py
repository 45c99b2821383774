"""Helpers shared by the top-level tests (a uniquely named module: every test folder has a conftest)."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper


def cli(*args: str, cwd: str | Path | None = None, check: bool = False) -> subprocess.CompletedProcess:
    """Run the installed ``trtcompress`` command."""
    exe = Path(sys.executable).parent / "trtcompress"
    proc = subprocess.run([str(exe), *args], capture_output=True, text=True, cwd=cwd, timeout=900)
    if check and proc.returncode != 0:
        raise AssertionError(f"trtcompress {' '.join(args)} exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}")
    return proc


def tiny_classifier(path: Path, seed: int = 0, dynamic: bool = True) -> Path:
    """Conv -> Relu -> GlobalAveragePool -> Flatten -> Gemm: a small real graph built in code."""
    rng = np.random.default_rng(seed)
    w = rng.standard_normal((16, 3, 3, 3)).astype(np.float32) * 0.3
    b = rng.standard_normal(16).astype(np.float32) * 0.1
    fc = rng.standard_normal((5, 16)).astype(np.float32)
    fb = np.zeros(5, np.float32)
    batch = "N" if dynamic else 1
    nodes = [
        helper.make_node("Conv", ["x", "w", "b"], ["c"], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c"], ["r"]),
        helper.make_node("GlobalAveragePool", ["r"], ["g"]),
        helper.make_node("Flatten", ["g"], ["f"]),
        helper.make_node("Gemm", ["f", "fc", "fb"], ["logits"], transB=1),
    ]
    graph = helper.make_graph(
        nodes, "tiny",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [batch, 3, 16, 16])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [batch, 5])],
        [numpy_helper.from_array(a, n) for a, n in ((w, "w"), (b, "b"), (fc, "fc"), (fb, "fb"))],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path
