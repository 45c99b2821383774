"""Run directories: ``runs/<name>/`` with ``artifacts/`` and ``report.json``.

The directory is built under a temporary name and renamed into place when the run ends, so no
reader ever sees it half-written. A run never deletes what it did not create: an existing run
directory is replaced only with ``overwrite``, and only when it is one (it holds ``report.json``);
anything else at that path is refused. Paths inside the temporary directory are rewritten to
where they end up (:meth:`RunDir.public`) before a report is written.
"""
from __future__ import annotations

import datetime as _dt
import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import Any

from .errors import ConfigError, UserError
from .fileio import publish_mode, write_json, write_text

__all__ = ["RunDir"]


class RunDir:
    """A run directory under construction. Use as a context manager."""

    def __init__(self, root: str | os.PathLike = "runs", name: str | None = None, overwrite: bool = False):
        name = name or _dt.datetime.now().strftime("run-%Y%m%d-%H%M%S")
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", name):
            raise ConfigError(f"run name {name!r} must be letters, digits, '.', '_' or '-'")
        self.name = name
        self.final = Path(root) / name
        self.overwrite = overwrite
        self._check_target()
        try:
            self.final.parent.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise UserError(f"cannot create the runs directory {self.final.parent}: {e.strerror}; choose another --runs-dir") from e
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

    def _check_target(self) -> None:
        """Refuse to replace anything but an earlier run, and that only with ``overwrite``."""
        if not os.path.lexists(self.final):
            return
        if not self.overwrite:
            raise ConfigError(f"run directory {self.final} exists; choose another --name or pass --overwrite to replace it")
        if not self.final.is_dir() or self.final.is_symlink() or not (self.final / "report.json").is_file():
            raise ConfigError(f"{self.final} exists and is not a trtcompress run directory (no report.json); it is left alone: choose another --name or --runs-dir")

    def public(self, obj: Any) -> Any:
        """``obj`` with every path string inside the temporary directory pointing at the final one."""
        tmp, final = str(self.path), str(self.final)
        if isinstance(obj, str):
            return final + obj[len(tmp):] if obj == tmp or obj.startswith(tmp + os.sep) else obj
        if isinstance(obj, dict):
            return {k: self.public(v) for k, v in obj.items()}
        if isinstance(obj, (list, tuple)):
            return type(obj)(self.public(v) for v in obj)
        return obj

    def write_report(self, report: dict[str, Any]) -> Path:
        return write_json(self.path / "report.json", self.public(report))

    def final_path(self, p: Path) -> Path:
        """Where ``p`` (inside the temporary directory) will be once the run is committed."""
        return self.final / Path(p).relative_to(self.path)

    def commit(self) -> Path:
        self._check_target()  # again: something may have appeared there while the run ran
        publish_mode(self.path, directory=True)
        old = None
        if os.path.lexists(self.final):
            # move the earlier run aside first, so a failure here loses neither of them
            old = Path(tempfile.mkdtemp(prefix=f".{self.name}.old.", dir=self.final.parent))
            os.replace(self.final, old / self.name)
        os.replace(self.path, self.final)
        self._committed = True
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
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
