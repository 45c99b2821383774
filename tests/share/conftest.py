"""Fixtures the share tests have in common: the zoo's Fashion-MNIST CNN and calibration feeds."""
from __future__ import annotations

import onnx
import pytest

from trtcompress.zoo.fashion_mnist import fashion_mnist
from trtcompress.zoo.models import onnx_path


@pytest.fixture(scope="module")
def fp32():
    return onnx.load(onnx_path("fashion_cnn"))


@pytest.fixture(scope="module")
def feeds():
    """32 training images in two feeds of 16 (calibration data for the data-driven rules)."""
    x, _ = fashion_mnist("train", limit=32)
    return [{"x": x[:16]}, {"x": x[16:]}]
