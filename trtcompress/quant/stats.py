"""Calibration statistics: an :class:`AbsHistogram` per tensor (or only its max |x| where that is
all the range rule needs), mergeable across shards and saved as .npz."""
from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path
from typing import Iterable

import numpy as np

from ..errors import DataError
from ..fileio import atomic_path
from .histogram import DEFAULT_BINS, AbsHistogram

__all__ = ["Statistics"]

_FORMAT = "trtcompress-calibration-statistics"
_FORMAT_VERSION = 2
_READABLE_VERSIONS = (1, 2)


@dataclasses.dataclass
class Statistics:
    """What calibration saw: a histogram of |x| per tensor and how many samples went through.

    ``maxima`` holds max |x| of the tensors collected without a histogram (see
    ``collect_statistics(max_only=...)``). Merging is exact (integer counts on a shared
    power-of-two grid, maxima), so statistics of shards merged in any order equal the statistics
    of the whole data set.
    """

    histograms: dict[str, AbsHistogram]
    num_samples: int = 0
    num_batches: int = 0
    bins: int = DEFAULT_BINS
    kernel: str = ""  # how the values were counted (never changes a result; for reports)
    maxima: dict[str, float] = dataclasses.field(default_factory=dict)

    @classmethod
    def empty(cls, tensors: Iterable[str], bins: int = DEFAULT_BINS, max_only: Iterable[str] = ()) -> "Statistics":
        only = set(max_only)
        return cls({t: AbsHistogram(bins) for t in tensors if t not in only}, bins=bins, maxima={t: 0.0 for t in tensors if t in only})

    @property
    def tensors(self) -> list[str]:
        return list(self.histograms) + list(self.maxima)

    def merge(self, *others: "Statistics") -> "Statistics":
        """Statistics of this data and ``others`` together; tensors missing from a shard count as unseen."""
        out = self
        for other in others:
            if other.bins != out.bins:
                raise DataError(f"cannot merge statistics with {out.bins} and {other.bins} bins; collect all shards with the same bins")
            names = list(out.histograms) + [t for t in other.histograms if t not in out.histograms]
            hists = {}
            for t in names:
                a, b = out.histograms.get(t), other.histograms.get(t)
                hists[t] = a.merge(b) if a is not None and b is not None else dataclasses.replace(a or b, counts=(a or b).counts.copy())
            maxima = {t: max(out.maxima.get(t, 0.0), other.maxima.get(t, 0.0)) for t in list(out.maxima) + list(other.maxima)}
            out = Statistics(hists, out.num_samples + other.num_samples, out.num_batches + other.num_batches, out.bins, maxima=maxima)
        return out

    @staticmethod
    def merge_all(shards: Iterable["Statistics"]) -> "Statistics":
        shards = list(shards)
        if not shards:
            raise DataError("no statistics to merge")
        return shards[0].merge(*shards[1:])

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Statistics):
            return NotImplemented
        return (
            self.num_samples == other.num_samples
            and self.bins == other.bins
            and list(self.histograms) == list(other.histograms)
            and all(self.histograms[t] == other.histograms[t] for t in self.histograms)
            and self.maxima == other.maxima
        )

    # -- .npz ------------------------------------------------------------------------------------

    def save(self, path: str | os.PathLike) -> Path:
        """Write to ``path`` (.npz) atomically; counts are stored sparsely (only used bins)."""
        path = Path(path)
        meta = {
            "format": _FORMAT,
            "version": _FORMAT_VERSION,
            "bins": self.bins,
            "num_samples": self.num_samples,
            "num_batches": self.num_batches,
            "tensors": [],
            "maxima": {t: m.hex() for t, m in self.maxima.items()},
        }
        arrays: dict[str, np.ndarray] = {}
        for k, (name, h) in enumerate(self.histograms.items()):
            used = h.used_bins()
            meta["tensors"].append(
                {"name": name, "exponent": h.exponent, "total": h.total, "zeros": h.zeros, "nonfinite": h.nonfinite, "amax": h.amax.hex(),
                 "lo": h.lo.hex(), "hi": h.hi.hex()}
            )
            arrays[f"counts_{k}"] = h.counts[:used]
        arrays["meta"] = np.frombuffer(json.dumps(meta).encode(), np.uint8)
        with atomic_path(path, suffix=".npz") as tmp:
            with open(tmp, "wb") as f:
                np.savez_compressed(f, **arrays)
        return path

    @classmethod
    def load(cls, path: str | os.PathLike) -> "Statistics":
        path = Path(path)
        try:
            with np.load(path, allow_pickle=False) as z:
                meta = json.loads(bytes(z["meta"]).decode())
                if meta.get("format") != _FORMAT:
                    raise DataError(f"{path} is not a trtcompress statistics file")
                if meta.get("version") not in _READABLE_VERSIONS:
                    raise DataError(f"{path}: statistics format version {meta.get('version')} is not supported (expected {_FORMAT_VERSION}); recollect")
                bins = int(meta["bins"])
                hists = {}
                for k, t in enumerate(meta["tensors"]):
                    counts = np.zeros(bins, np.int64)
                    stored = z[f"counts_{k}"]
                    counts[: stored.size] = stored
                    hists[t["name"]] = AbsHistogram(
                        bins, t["exponent"], counts, int(t["total"]), int(t["zeros"]), int(t["nonfinite"]), float.fromhex(t["amax"]),
                        float.fromhex(t.get("lo", "inf")), float.fromhex(t.get("hi", "-inf")),  # older files have no signed range
                    )
                maxima = {t: float.fromhex(m) for t, m in meta.get("maxima", {}).items()}
        except FileNotFoundError:
            raise DataError(f"statistics file not found: {path}") from None
        except (KeyError, ValueError, OSError) as e:
            raise DataError(f"{path}: not a readable statistics file ({type(e).__name__}: {e}); recollect it") from e
        return cls(hists, int(meta["num_samples"]), int(meta["num_batches"]), bins, maxima=maxima)
