"""The CUDA runtime for engine benchmarks: cuda-python, else torch, else a one-line error naming the extra."""
from __future__ import annotations

import pytest

from trtcompress.errors import MissingDependencyError
from trtcompress.trt.gpu import GPU_APIS, gpu_api


def test_apis_are_registered_in_preference_order():
    assert list(GPU_APIS) == ["cuda-python", "torch"]


@pytest.mark.gpu
def test_a_gpu_api_reports_the_device():
    info = gpu_api().info()
    assert info.name and info.sm >= (5, 0)


def test_without_a_gpu_runtime_the_error_names_the_extra():
    try:
        api = gpu_api()
    except MissingDependencyError as e:
        assert "pip install 'trtcompress[trt]'" in str(e) and "\n" not in str(e)
    else:
        pytest.skip(f"a GPU runtime is present ({api.name})")
