"""Sensitivity analysis and range refinement (:func:`trtcompress.quant.sensitivity.analyse`) as a Ray task.

The analysis runs on the kept calibration samples (8 by default, one or two batches): the driver
sends the model, the plan, the merged table and those samples to one task, which runs the same
function and returns its result. The ONNX Runtime passes (the shadow pass over every range
candidate, then the INT8 model) run on a cluster node instead of the driver, with the same
inputs, so the chosen ranges and every layer's error are the single-process run's (tested with
the calibration in tests/distributed/test_ray_calibrate.py). It is one task, not a split: the
sums over samples are added in the single-process order only when one process adds them, and on
a handful of samples a split would cost more in start-up than it saves.
"""
from __future__ import annotations

import contextlib
import os
import time
from typing import Any, Iterable, Iterator

import onnx

from .._optional import require
from ..weightless import has_external_data

__all__ = ["connected", "analyse_on_ray"]


@contextlib.contextmanager
def connected(address: str) -> Iterator[Any]:
    """Ray joined at ``address`` for the block (calibration and the analysis share one
    connection; left as found when this process had already joined)."""
    from .cluster import connect as _connect

    ray = require("ray", "quantize --ray")
    started = _connect(ray, address)
    try:
        yield ray
    finally:
        if started:
            ray.shutdown()


def _analyse(model: bytes, plan, table, feeds, kwargs: dict[str, Any]):
    """The task: the analysis, and where and how long it ran."""
    from ..quant.sensitivity import analyse

    t0 = time.perf_counter()
    found = analyse(onnx.load_from_string(model), plan, table, feeds, **kwargs)
    ray = require("ray")
    return found, {"pid": os.getpid(), "node": ray.get_runtime_context().get_node_id(), "seconds": round(time.perf_counter() - t0, 3)}


def analyse_on_ray(address: str, model: onnx.ModelProto, plan, table, feeds: Iterable, cpus: int = 1, max_retries: int = 3, **kwargs: Any):
    """:func:`analyse` in one Ray task of ``cpus`` CPUs (ONNX Runtime's threads, unless ``threads``
    is given): its result, and where the task ran (None when the analysis ran here: a model over
    2 GB or with external data, which calibration on Ray refuses before this)."""
    from ..quant.sensitivity import analyse

    if has_external_data(model) or model.ByteSize() > (2 << 30) - 1:
        return analyse(model, plan, table, feeds, **kwargs), None
    kwargs = {**kwargs, "threads": kwargs.get("threads") or cpus}
    with connected(address) as ray:
        from .ray_calibrate import _result

        task = ray.remote(_analyse).options(num_cpus=cpus, max_retries=max_retries, retry_exceptions=False)
        feeds = list(feeds)
        ref = task.remote(model.SerializeToString(), plan, table, feeds, kwargs)
        return _result(ray, ref, f"sensitivity analysis on {len(feeds)} batch(es)")
