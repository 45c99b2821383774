"""Calibration over a Ray cluster: the data split into shards of sample indices, one task a shard.

``shards`` (no Ray needed) says which samples a shard holds and opens them where the task runs;
``ray_calibrate`` runs the tasks and merges their statistics. Ray is the ``ray`` extra and is
imported only when a run asks for it: ``import trtcompress`` never imports it.
"""
from __future__ import annotations

import importlib.util
import sys

from ..errors import MissingDependencyError

__all__ = ["LOCAL", "check_ray", "check_ray_train"]

# --ray without an address: ray.init()'s own choice (the cluster RAY_ADDRESS names, else a new
# one on this machine)
LOCAL = "local"


def check_ray(purpose: str = "--ray") -> None:
    """Refuse, before any work and without importing Ray (seconds), when the ``ray`` extra is missing."""
    if not _found("ray"):
        raise MissingDependencyError(f"ray is needed for {purpose} but is not installed; run: pip install 'trtcompress[ray]'")


# what ``import ray.train`` needs beyond Ray itself (ray[train], in the ``ray`` extra)
_RAY_TRAIN_DEPS = ("fsspec", "pandas", "pyarrow")


def check_ray_train(purpose: str = "fine-tuning with --ray") -> None:
    """As :func:`check_ray`, for Ray Train: Ray installed without ``ray[train]`` lacks its dependencies."""
    check_ray(purpose)
    missing = [m for m in _RAY_TRAIN_DEPS if not _found(m)]
    if missing:
        raise MissingDependencyError(f"Ray Train is needed for {purpose} but {', '.join(missing)} {'is' if len(missing) == 1 else 'are'} not installed; run: pip install 'trtcompress[ray]'")


def _found(module: str) -> bool:
    """Whether ``module`` is installed, without importing it."""
    return sys.modules[module] is not None if module in sys.modules else importlib.util.find_spec(module) is not None
