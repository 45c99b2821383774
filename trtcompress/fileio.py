"""Atomic writes: build an artifact under a temporary name, rename it into place on success."""
from __future__ import annotations

import contextlib
import errno
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Iterator

__all__ = ["atomic_path", "atomic_dir", "json_text", "write_json", "write_text", "publish_mode", "output_errors", "require_file_target"]

# errno -> what the user can do about it; other OSErrors are bugs and keep their traceback
_WRITE_FIXES = {
    errno.EACCES: "choose a folder you can write to or fix its permissions",
    errno.EPERM: "choose a folder you can write to or fix its permissions",
    errno.EROFS: "the file system is read-only: choose another output folder",
    errno.ENOSPC: "the disk is full: free space or choose another output folder",
    errno.EDQUOT: "the disk quota is exhausted: free space or choose another output folder",
    # a file stands where the path needs a folder (mkdir of the parent, or a path through a file)
    errno.EEXIST: "a file stands where the output's folder should be: choose another path",
    errno.ENOTDIR: "a file stands where the output's folder should be: choose another path",
}


@contextlib.contextmanager
def output_errors(path: str | os.PathLike) -> Iterator[None]:
    """Turn the OS refusing to write ``path`` (permissions, read-only, full) into an OutputError."""
    try:
        yield
    except OSError as e:
        fix = _WRITE_FIXES.get(e.errno)
        if fix is None:
            raise
        from .errors import OutputError

        raise OutputError(f"cannot write {path}: {e.strerror}; {fix}") from e


def require_file_target(path: str | os.PathLike) -> Path:
    """``path`` as a file to write; an existing directory there is refused (a rename onto it fails late)."""
    path = Path(path)
    if path.is_dir():
        from .errors import OutputError

        raise OutputError(f"{path} is a directory; give a file name inside it, e.g. {path / 'model.onnx'}")
    return path


def _umask() -> int:
    mask = os.umask(0o022)  # the only way to read it is to set it
    os.umask(mask)
    return mask


def publish_mode(path: Path, directory: bool = False) -> None:
    """Give a file made by ``mkstemp``/``mkdtemp`` (0600/0700) the mode an ordinary write gives,
    so an artifact is as readable as any other file its user writes."""
    os.chmod(path, (0o777 if directory else 0o666) & ~_umask())


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, suffix: str | None = None) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it onto ``path`` only if the block succeeds."""
    path = require_file_target(path)
    with output_errors(path):
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix or ".tmp", dir=path.parent)
    os.close(fd)
    tmp = Path(tmp)
    try:
        with output_errors(path):
            yield tmp
            publish_mode(tmp)
            os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


@contextlib.contextmanager
def atomic_dir(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary directory beside ``path``; it replaces ``path`` only if the block succeeds."""
    path = Path(path)
    with output_errors(path):
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
    try:
        with output_errors(path):
            yield tmp
            publish_mode(tmp, directory=True)
            if path.exists():
                shutil.rmtree(path)
            os.replace(tmp, path)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def write_text(path: str | os.PathLike, text: str) -> Path:
    with atomic_path(path) as tmp:
        tmp.write_text(text)
    return Path(path)


def write_json(path: str | os.PathLike, obj: Any) -> Path:
    return write_text(path, json_text(obj))


def json_text(obj: Any) -> str:
    """``obj`` as the JSON text :func:`write_json` writes (numpy values and paths as plain JSON)."""
    return json.dumps(obj, indent=2, sort_keys=False, default=_json_default) + "\n"


def _json_default(o: Any) -> Any:
    import numpy as np

    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    if hasattr(o, "to_dict"):
        return o.to_dict()
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")
