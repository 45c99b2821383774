"""Training data that stops a run part way, as a killed process would (the resume tests)."""
from __future__ import annotations


class Crash(Exception):
    pass


class CrashAfter:
    """Training batches that raise :class:`Crash` after ``n`` in all (every replica of a
    data-parallel run raises at the same batch)."""

    def __init__(self, data, n):
        self.data, self.n, self.seen = data, n, 0

    def __len__(self):
        return len(self.data)

    def __iter__(self):
        for batch in self.data:
            if self.seen == self.n:
                raise Crash
            self.seen += 1
            yield batch
