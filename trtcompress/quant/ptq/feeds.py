"""The calibration feeds a technique's data pass reads: at most ``samples`` samples in all."""
from __future__ import annotations

from typing import Iterable, Iterator

import numpy as np

__all__ = ["limited"]

Feed = dict[str, np.ndarray]


def limited(feeds: Iterable[Feed], samples: int | None) -> Iterator[tuple[int, Feed]]:
    """``(n, feed)`` for each feed, the last one cut so that the ``n`` add up to at most
    ``samples`` (None: every feed whole)."""
    seen = 0
    for feed in feeds:
        n = len(next(iter(feed.values())))
        if samples is not None:
            n = min(n, samples - seen)
            if n <= 0:
                return
            feed = {k: v[:n] for k, v in feed.items()}
        seen += n
        yield n, feed
