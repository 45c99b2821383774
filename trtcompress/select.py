"""The one include/exclude matcher every stage uses, on the ONNX side and the torch side.

A pattern matches a layer when it equals one of the layer's names (node name, op type, output
or weight name, torch module name), matches one as a shell glob (``blocks.1*``), or, written
``re:REGEX``, is found in one by ``re.search``. Every stage takes the same patterns, so a recipe
that excludes ``classifier*`` from pruning can exclude it from quantization with the same words.
"""
from __future__ import annotations

import dataclasses
import fnmatch
import re
from typing import Iterable, Sequence

from .errors import ConfigError

__all__ = ["Patterns", "check_all_used"]

HINT = "give a node name, an op type such as Conv, a glob such as 'blocks.1*', or re:REGEX"


@dataclasses.dataclass(frozen=True)
class Patterns:
    """A set of include or exclude patterns; empty matches nothing."""

    patterns: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "patterns", tuple(self.patterns))
        for p in self.patterns:
            if p.startswith("re:"):
                try:
                    re.compile(p[3:])
                except re.error as e:
                    raise ConfigError(f"bad regular expression in {p!r}: {e}") from None

    def __bool__(self) -> bool:
        return bool(self.patterns)

    def match(self, names: Iterable[str]) -> str | None:
        """The first pattern that matches any of ``names``, or None."""
        names = [n for n in names if n]
        for p in self.patterns:
            if _matches(p, names):
                return p
        return None


def _matches(pattern: str, names: Sequence[str]) -> bool:
    if pattern.startswith("re:"):
        return any(re.search(pattern[3:], n) for n in names)
    return any(pattern == n or fnmatch.fnmatchcase(n, pattern) for n in names)


def check_all_used(patterns: Patterns, layers: Iterable[Iterable[str]], flag: str) -> None:
    """Refuse a pattern that matches none of ``layers`` (each given by its names): a typo would
    otherwise silently change nothing."""
    layers = [list(names) for names in layers]
    for p in patterns.patterns:
        if not any(_matches(p, [n for n in names if n]) for names in layers):
            raise ConfigError(f"{flag} {p!r} matches no node ({HINT})")
