"""Names for what the benchmarks keep between runs (exported models, calibration tables, generated
data), keyed by a digest of the code and the inputs that made them.

A file made by other code or from other data is then never picked up again: a calibration table
reused by name once outlived the calibration code that wrote it. Changing anything under
``trtcompress/`` (the zoo's weights included) or an input gives new names; old files are left for
``rm -r benchmarks/_work``.
"""
from __future__ import annotations

import functools
import hashlib
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
CODE = ROOT / "trtcompress"

__all__ = ["digest", "keyed", "CODE"]


def _files(p: Path) -> list[Path]:
    if not p.is_dir():
        return [p]
    return sorted(f for f in p.rglob("*") if f.is_file() and "__pycache__" not in f.parts and f.suffix not in (".pyc", ".so"))


@functools.lru_cache(maxsize=None)
def _path_digest(p: Path, mtimes: tuple) -> bytes:
    h = hashlib.sha256()
    for f in _files(p):
        h.update(str(f.relative_to(p) if p.is_dir() else f.name).encode() + b"\0")
        with open(f, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                h.update(block)
    return h.digest()


def digest(*parts: Any) -> str:
    """A short digest of ``parts``: a Path by the bytes of its file (or of every file under it),
    anything else by its ``repr``."""
    h = hashlib.sha256()
    for part in parts:
        if isinstance(part, Path):
            p = part.resolve()
            if not p.exists():
                raise FileNotFoundError(f"cache key input {p} does not exist")
            h.update(_path_digest(p, tuple((str(f), f.stat().st_mtime_ns, f.stat().st_size) for f in _files(p))))
        else:
            h.update(repr(part).encode())
        h.update(b"\x1f")
    return h.hexdigest()[:16]


def keyed(path: Path, *inputs: Any) -> Path:
    """``path`` with a digest of the trtcompress code and ``inputs`` in its name."""
    return path.with_name(f"{path.stem}-{digest(CODE, *inputs)}{path.suffix}")
