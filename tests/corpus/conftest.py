"""The corpus, built once per session: ``corpus(name)`` exports (or locates) the entry and keeps it."""
from __future__ import annotations

import pytest

from .builders import build


@pytest.fixture(scope="session")
def corpus(tmp_path_factory):
    pytest.importorskip("torch")
    root = tmp_path_factory.mktemp("corpus")
    cache: dict = {}

    def get(name: str):
        if name not in cache:
            cache[name] = build(name, root)
        return cache[name]

    get.root = root
    return get
