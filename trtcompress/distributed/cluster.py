"""Joining a Ray cluster, for every use of Ray here (calibration shards, sweep variants)."""
from __future__ import annotations

import logging
from typing import Any

from ..errors import ConfigError
from . import LOCAL

__all__ = ["connect"]


def connect(ray: Any, address: str) -> bool:
    """Join the cluster at ``address`` (or use the one this process already joined); True when this
    call started Ray (the caller then shuts it down)."""
    if ray.is_initialized():
        return False
    try:
        ray.init(address=None if address == LOCAL else address, include_dashboard=False, log_to_driver=False, logging_level=logging.WARNING)
    except (ConnectionError, RuntimeError, ValueError) as e:
        raise ConfigError(f"cannot join the Ray cluster at {address!r}: {str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__}; "
                          f"give auto, HOST:6379 or ray://HOST:10001, or {LOCAL} for a cluster on this machine") from e
    return True
