"""Weight quantization: TensorRT's rule (round half to even, clamp to [-127, 127]) on any shape and
axis, computed block by block without changing a value."""
from __future__ import annotations

import numpy as np
import pytest

from trtcompress.quant import scales
from trtcompress.quant.scales import quantize_weight, weight_scales


@pytest.mark.parametrize("shape, axis", [((6, 5, 3, 3), 0), ((6, 5, 3, 3), 1), ((40, 24), 1), ((40, 24), 0), ((40, 24), None), ((7,), 0), ((), None)])
def test_quantize_weight_matches_the_rule_in_blocks(monkeypatch, shape, axis):
    monkeypatch.setattr(scales, "QUANTIZE_BLOCK", 50)  # several blocks, some of one row
    rng = np.random.default_rng(3)
    w = (rng.standard_normal(shape) * rng.uniform(0.1, 3.0)).astype(np.float32)
    s = weight_scales(w, axis)
    if s.ndim:
        s = s * np.float32(0.6)  # some values clamp
    b = np.asarray(s, np.float32)
    if axis is not None and b.ndim == 1:
        b = b.reshape([-1 if i == axis else 1 for i in range(w.ndim)])
    expected = np.clip(np.rint(w / b), -127, 127).astype(np.int8)
    got = quantize_weight(w, s, axis)
    assert got.dtype == np.int8 and got.shape == w.shape
    np.testing.assert_array_equal(got, expected)
    if s.ndim:
        assert got.min() == -127 or got.max() == 127


def test_half_way_values_round_to_even():
    w = np.array([[0.5, 1.5, 2.5, -0.5, -1.5, 200.0]], np.float32)
    assert quantize_weight(w, np.float32(1.0), None).tolist() == [[0, 2, 2, 0, -2, 127]]
