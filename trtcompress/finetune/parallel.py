"""One process's share of a data-parallel distillation: its rank, its slice of each batch, DDP.

Every worker draws the same shuffled order (the trainer seeds torch's generator per epoch from the
run's seed, so the order is the single-process run's) and takes its contiguous slice of each
global batch, reading only its own samples where the data allows (in-memory sets; augmentation
runs after the split, on the worker's slice): the samples of step k, over all workers, are the single-process run's
batch k. Each worker's loss is the mean over its slice, weighted by ``world * n_r / n`` so that
DDP's average of the workers' gradients is the gradient of the mean over the whole batch, also
when the batch does not divide evenly (a last, short batch). With one worker the weight is 1.0
and the all-reduces add nothing: the run is the single-process one, bit for bit. With more, the
same sums are added in another order: the result matches the single-process run up to float
rounding, not bit for bit (and the workers' dropout and augmentation draws are their own).

Needs torch.distributed initialised (Ray Train does it: :mod:`trtcompress.distributed.ray_train`).
"""
from __future__ import annotations

import dataclasses
from typing import Any, Iterable

from .._optional import require

__all__ = ["Replica"]


@dataclasses.dataclass(frozen=True)
class Replica:
    """Worker ``rank`` of ``world`` in an initialised torch.distributed process group."""

    rank: int
    world: int

    def __post_init__(self) -> None:
        if not 0 <= self.rank < self.world:
            raise ValueError(f"a replica's rank is in [0, world), got rank {self.rank} of {self.world}")

    @classmethod
    def current(cls) -> "Replica":
        dist = require("torch.distributed", "data-parallel fine-tuning")
        if not dist.is_initialized():
            raise RuntimeError("data-parallel fine-tuning needs torch.distributed initialised (Ray Train does it)")
        return cls(dist.get_rank(), dist.get_world_size())

    def bounds(self, n: int) -> tuple[int, int]:
        """This rank's samples ``[a, b)`` of a batch of ``n``: contiguous, sizes differing by at
        most one, rank 0's never empty (ceil of ``n * r / world``)."""
        return -(-n * self.rank // self.world), -(-n * (self.rank + 1) // self.world)

    def part(self, n: int) -> tuple[int, int, float]:
        """This rank's samples ``[a, b)`` of a batch of ``n`` and its loss weight ``world * n_r / n``.
        An empty share (a batch smaller than the world) is one sample at weight 0: DDP still needs
        this rank's (zero) gradients."""
        a, b = self.bounds(n)
        return (0, 1, 0.0) if a == b else (a, b, self.world * (b - a) / n)

    def split(self, x, y) -> tuple[Any, Any, float]:
        """This rank's slice of the batch ``(x, y)`` and its loss weight (:meth:`part`)."""
        a, b, w = self.part(len(x))
        return x[a:b], (y[a:b] if y is not None else None), w

    def shard(self, data) -> Iterable[tuple[Any, Any, float]]:
        """This rank's ``(x, y, weight)`` of every batch of ``data``: read from its own samples only
        where the data can (``data.sharded(replica)``: in-memory sets, augmentation after the
        split), else sliced from each whole batch."""
        if hasattr(data, "sharded"):
            return data.sharded(self)
        return (self.split(x, y) for x, y in data)

    def wrap(self, model):
        """``model`` in DistributedDataParallel (gloo on CPU); its parameters are rank 0's after this."""
        torch = require("torch", "data-parallel fine-tuning")
        return torch.nn.parallel.DistributedDataParallel(model)

    def total(self, weighted_loss) -> float:
        """The whole batch's mean loss from each rank's weighted one (the sum over ranks / world)."""
        torch = require("torch", "data-parallel fine-tuning")
        dist = require("torch.distributed", "data-parallel fine-tuning")
        t = weighted_loss.detach().reshape(1).to(torch.float64)
        dist.all_reduce(t)
        return float(t) / self.world

    def gather(self, obj: Any) -> list[Any]:
        """``obj`` from every rank, in rank order (all ranks call it)."""
        dist = require("torch.distributed", "data-parallel fine-tuning")
        out: list[Any] = [None] * self.world
        dist.all_gather_object(out, obj)
        return out
