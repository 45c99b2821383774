"""Fixtures for the quantization tests."""
from __future__ import annotations

import numpy as np
import onnx
import pytest

from calib_graphs import conv_relu_mlp


@pytest.fixture(scope="session")
def small_model() -> onnx.ModelProto:
    return conv_relu_mlp()


@pytest.fixture(scope="session")
def samples() -> np.ndarray:
    rng = np.random.default_rng(42)
    return (rng.standard_normal((24, 3, 8, 8)) * rng.uniform(0.5, 2.0, (24, 1, 1, 1))).astype(np.float32)
