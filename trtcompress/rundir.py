"""Run directories: ``runs/<name>/`` with ``artifacts/`` and ``report.json``.

The directory is built under a temporary name and renamed into place only when the run succeeds,
so a failed run leaves nothing half-written.
"""
from __future__ import annotations

import datetime as _dt
import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import Any

from .errors import ConfigError
from .fileio import publish_mode, write_json, write_text

__all__ = ["RunDir"]


class RunDir:
    """A run directory under construction. Use as a context manager."""

    def __init__(self, root: str | os.PathLike = "runs", name: str | None = None, overwrite: bool = True):
        name = name or _dt.datetime.now().strftime("run-%Y%m%d-%H%M%S")
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", name):
            raise ConfigError(f"run name {name!r} must be letters, digits, '.', '_' or '-'")
        self.name = name
        self.final = Path(root) / name
        if self.final.exists() and not overwrite:
            raise ConfigError(f"run directory {self.final} exists; choose another --name or pass --overwrite")
        self.final.parent.mkdir(parents=True, exist_ok=True)
        self.path = Path(tempfile.mkdtemp(prefix=f".{name}.", dir=self.final.parent))
        self.artifacts = self.path / "artifacts"
        self.artifacts.mkdir()
        self._committed = False

    def artifact(self, name: str) -> Path:
        """Path of an artifact inside the (temporary) run directory."""
        return self.artifacts / name

    def write_artifact(self, name: str, content: str | bytes) -> Path:
        p = self.artifact(name)
        if isinstance(content, bytes):
            p.write_bytes(content)
        else:
            write_text(p, content)
        return p

    def write_report(self, report: dict[str, Any]) -> Path:
        return write_json(self.path / "report.json", report)

    def final_path(self, p: Path) -> Path:
        """Where ``p`` (inside the temporary directory) will be once the run is committed."""
        return self.final / Path(p).relative_to(self.path)

    def commit(self) -> Path:
        if self.final.exists():
            shutil.rmtree(self.final)
        publish_mode(self.path, directory=True)
        os.replace(self.path, self.final)
        self._committed = True
        return self.final

    def abort(self) -> None:
        if not self._committed:
            shutil.rmtree(self.path, ignore_errors=True)

    def __enter__(self) -> "RunDir":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.commit()
        else:
            self.abort()
