"""Training checkpoints, written atomically: a crash mid-write never leaves a broken ``last.pt``."""
from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import numpy as np

from .._optional import require
from ..errors import ConfigError
from ..fileio import atomic_path

__all__ = ["save_checkpoint", "load_checkpoint", "LAST", "rng_state", "set_rng_state"]

LAST = "last.pt"


def rng_state() -> dict[str, Any]:
    torch = require("torch", "checkpoints")
    return {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate()}


def set_rng_state(state: dict[str, Any]) -> None:
    torch = require("torch", "checkpoints")
    torch.set_rng_state(state["torch"])
    np.random.set_state(state["numpy"])
    random.setstate(state["python"])


def save_checkpoint(directory: str | Path, state: dict[str, Any], keep_step: bool = False) -> Path:
    """Write ``state`` to ``directory/last.pt`` (and ``step-NNNNNNN.pt`` when ``keep_step``)."""
    torch = require("torch", "checkpoints")
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    target = directory / LAST
    with atomic_path(target) as tmp:
        torch.save(state, tmp)
    if keep_step:
        with atomic_path(directory / f"step-{state['step']:07d}.pt") as tmp:
            torch.save(state, tmp)
    return target


def load_checkpoint(directory: str | Path) -> dict[str, Any] | None:
    """The last checkpoint in ``directory``, or None when there is none."""
    torch = require("torch", "checkpoints")
    path = Path(directory) / LAST
    if not path.is_file():
        return None
    try:
        # our own file: optimizer state and RNG states are not plain tensors
        return torch.load(path, map_location="cpu", weights_only=False)
    except Exception as e:
        raise ConfigError(f"checkpoint {path} cannot be read ({type(e).__name__}: {e}); delete it to start over") from e
