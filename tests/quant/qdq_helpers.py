"""Helpers for the Q/DQ tests: tiny graphs, their calibration tables, ORT runs, and the ``case`` fixture."""
from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from trtcompress.quant.placement import plan_quantization
from trtcompress.quant.table import CalibrationTable

import qdq_graphs as graphs


def calibrate_for_test(model: onnx.ModelProto, plan, feeds, method: str = "max") -> CalibrationTable:
    """The product's calibration (one ONNX Runtime pass) on the plan's tensors."""
    from trtcompress.quant.calibrate import CollectConfig, calibrate

    return calibrate(model, plan.activation_tensors, list(feeds), method=method, config=CollectConfig(progress=False))


def run(model: onnx.ModelProto, feeds, optimize: bool = True) -> list[np.ndarray]:
    so = ort.SessionOptions()
    so.log_severity_level = 3
    if not optimize:  # exact Q/DQ arithmetic (ONNX Runtime's int8 fusions are not what TensorRT runs)
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    s = ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"])
    return [s.run(None, f)[0] for f in feeds]


@pytest.fixture(params=["mbconv", "encoder", "conv_transpose"])
def case(request):
    model = getattr(graphs, request.param)()
    feeds = graphs.feeds(model)
    plan = plan_quantization(model)
    table = calibrate_for_test(model, plan, feeds)
    return request.param, model, plan, table, feeds


def cli(*args: str):
    """Run the installed ``trtcompress`` command (as tests/conftest.py's ``cli``; imported by name
    there would resolve to the calibration tests' conftest in this folder)."""
    import subprocess
    import sys
    from pathlib import Path

    exe = Path(sys.executable).parent / "trtcompress"
    return subprocess.run([str(exe), *args], capture_output=True, text=True, timeout=900)
