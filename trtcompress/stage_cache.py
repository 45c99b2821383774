"""A cache of finished stages, so an interrupted or changed run recomputes only what changed.

An entry is keyed by the sha256 of what determines a stage's output (:meth:`StageCache.key`):
the stage's name, its resolved config, the bytes of its input model, a fingerprint of the data
its config names, and the code (trtcompress's sources and the versions of the libraries that
compute). Data is fingerprinted by what it is, not where it is: a file or folder by the relative
names, sizes and modification times of its files (hidden folders left out; a temporary ``--calib-from-data split`` folder
holding the same files gives the same key), a ``module:file.py:fn`` reader by its file, a
``pymodule:pkg.mod:fn`` reader by its module's file. What a reader's code reads besides its own
file is not seen: hence reuse is asked for (``--resume``), never implied.

The cache lives beside the run directories (``<runs_dir>/.cache/<key>/``), outside a run's
temporary directory, so the stages an interrupted run finished survive it. An entry holds the
stage's output model, its report and artifacts, and is written under a temporary name and
renamed into place: a reader sees a whole entry or none, and two runs writing the same entry
keep the first.
"""
from __future__ import annotations

import dataclasses
import functools
import hashlib
import importlib.metadata
import importlib.util
import json
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

import onnx

from .config import Config
from .errors import UserError
from .fileio import json_text, publish_mode
from .stage import StageResult

__all__ = ["StageCache", "data_fingerprint", "model_digest", "stage_cache"]

CACHE_DIR = ".cache"  # under the runs directory; run names start with a letter or digit, so no run is called this
_KEY_VERSION = 1  # bump when what goes into a key changes
# libraries whose version changes what a stage computes (quantize calibrates with ONNX Runtime)
_LIBRARIES = ("numpy", "onnx", "onnxruntime", "onnx-ir", "torch")


@dataclasses.dataclass
class StageCache:
    """Entries under ``root``. ``reuse``: return stored entries (``--resume``); without it the
    cache is only written, so a run that is interrupted can be resumed later."""

    root: Path
    reuse: bool = False
    log: Callable[[str], None] = lambda msg: None

    def key(self, name: str, config: Config, model: Any) -> str | None:
        """The entry key of stage ``name`` with ``config`` on ``model``; None for a model that is
        not ONNX (such a stage is not cached)."""
        if not isinstance(model, onnx.ModelProto):
            return None
        parts = {
            "key_version": _KEY_VERSION,
            "stage": name,
            "config": _fingerprinted(config.to_dict()),
            "model": model_digest(model),
            "code": code_fingerprint(),
        }
        return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()

    def get(self, key: str | None) -> StageResult | None:
        """The stored result of ``key``, or None (not reusing, not stored, or unreadable)."""
        if key is None or not self.reuse:
            return None
        entry = self.root / key
        if not (entry / "entry.json").is_file():
            return None
        from .model_io import load_model

        try:
            meta = json.loads((entry / "entry.json").read_text())
            model = load_model(entry / "model.onnx")
            artifacts: dict[str, str | bytes] = {}
            for i, a in enumerate(meta["artifacts"]):
                data = (entry / "artifacts" / str(i)).read_bytes()
                artifacts[a["name"]] = data.decode() if a["text"] else data
        except (OSError, ValueError, KeyError, UserError) as e:
            self.log(f"warning: stage cache entry {entry} is unreadable ({e}); recomputing the stage")
            shutil.rmtree(entry, ignore_errors=True)
            return None
        return StageResult(model, meta["report"], artifacts)

    def put(self, key: str | None, name: str, config: Config, result: StageResult, seconds: float) -> StageResult:
        """Store ``result``; returns the result the run continues with (for a model saved with
        external data, which moves its weights out of the proto, the model read back). A cache
        that cannot be written is a warning, not a failed run."""
        if key is None or not isinstance(result.model, onnx.ModelProto):
            return result
        from .model_io import load_model, save_model
        from .weightless import is_large

        entry = self.root / key
        if entry.exists():
            return result
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            tmp = Path(tempfile.mkdtemp(prefix=f".{key[:16]}.", dir=self.root))
        except OSError as e:
            self.log(f"warning: stage {name}: not cached ({e.strerror}: {self.root})")
            return result
        large = is_large(result.model)
        try:
            save_model(result.model, tmp / "model.onnx", check=False)
            (tmp / "artifacts").mkdir()
            listed = []
            for i, (fname, content) in enumerate(result.artifacts.items()):
                text = isinstance(content, str)
                (tmp / "artifacts" / str(i)).write_bytes(content.encode() if text else content)
                listed.append({"name": fname, "text": text})
            meta = {"stage": name, "config": config.to_dict(), "report": result.report, "artifacts": listed,
                    "seconds": seconds, "created": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
            (tmp / "entry.json").write_text(json_text(meta))
            publish_mode(tmp, directory=True)
            try:
                os.rename(tmp, entry)  # atomic; fails when another run stored this entry meanwhile
            except OSError:
                if not entry.exists():
                    raise
        except OSError as e:
            self.log(f"warning: stage {name}: not cached ({e})")
        try:
            if large:  # save_model moved the weights into the saved model's data file: read them back
                saved = entry if (entry / "entry.json").is_file() else tmp
                return dataclasses.replace(result, model=load_model(saved / "model.onnx"))
            return result
        finally:
            shutil.rmtree(tmp, ignore_errors=True)


def stage_cache(config: Any, log: Callable[[str], None]) -> StageCache | None:
    """The cache of a compress run (a CompressConfig): ``<runs_dir>/.cache``, reused with ``resume``."""
    if not config.cache:
        return None
    return StageCache(Path(config.runs_dir) / CACHE_DIR, reuse=config.resume, log=log)


def model_digest(model: onnx.ModelProto) -> str:
    """sha256 of the model's bytes. Over the protobuf limit, each tensor's data is hashed on its own
    and the rest of the proto without it (the data is put back)."""
    from .weightless import is_large

    if not is_large(model):
        return hashlib.sha256(model.SerializeToString(deterministic=True)).hexdigest()
    h = hashlib.sha256()
    held = []
    try:
        for t in onnx.external_data_helper._get_all_tensors(model):
            if t.HasField("raw_data"):
                data = t.raw_data
                h.update(data)
                held.append((t, data))
                t.ClearField("raw_data")
        h.update(model.SerializeToString(deterministic=True))
    finally:
        for t, data in held:
            t.raw_data = data
    return h.hexdigest()


def _fingerprinted(value: Any) -> Any:
    """A config's plain values with every string that names data replaced by its fingerprint."""
    if isinstance(value, dict):
        return {k: _fingerprinted(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_fingerprinted(v) for v in value]
    if isinstance(value, str):
        fp = data_fingerprint(value)
        return {"data": fp} if fp is not None else value
    return value


def data_fingerprint(spec: str) -> str | None:
    """A fingerprint of the file or folder a data spec names (``path``, ``kind:path``,
    ``module:file.py:fn``, ``pymodule:pkg.mod:fn``), independent of where it lies; None for a
    spec that names no file (``random:8``, ``photos:calib``: the spec and the code determine it)."""
    kind, sep, rest = spec.partition(":")
    if kind == "pymodule" and rest:
        try:
            found = importlib.util.find_spec(rest.rsplit(":", 1)[0])
        except (ImportError, ValueError):
            found = None
        origin = getattr(found, "origin", None)
        return f"pymodule:{_path_fingerprint(Path(origin))}" if origin and Path(origin).is_file() else None
    candidates = [("", spec)] + ([(kind, rest), (kind, rest.rsplit(":", 1)[0])] if sep and rest else [])
    for prefix, path in candidates:
        if path and os.path.exists(path):
            return f"{prefix}:{_path_fingerprint(Path(path))}"
    return None


def _path_fingerprint(path: Path) -> str:
    h = hashlib.sha256()
    if path.is_file():
        st = path.stat()
        h.update(f"{st.st_size}:{st.st_mtime_ns}".encode())
        return "file:" + h.hexdigest()
    for top, dirs, files in os.walk(path, followlinks=True):
        # hidden folders are left out: a data folder that is also the working directory holds runs/.cache
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for f in sorted(files):
            p = Path(top) / f
            try:
                st = p.stat()  # a symlink's target (a split folder links to the data files)
            except OSError:
                continue
            h.update(f"{p.relative_to(path).as_posix()}\0{st.st_size}:{st.st_mtime_ns}\n".encode())
    return "dir:" + h.hexdigest()


@functools.lru_cache(maxsize=1)
def code_fingerprint() -> str:
    """trtcompress's version and sources and the computing libraries' versions: an edited or
    upgraded stage never reuses what its earlier code computed."""
    from . import __version__

    h = hashlib.sha256(__version__.encode())
    package = Path(__file__).resolve().parent
    for p in sorted(package.rglob("*.py")):
        h.update(p.relative_to(package).as_posix().encode() + b"\0" + p.read_bytes())
    for lib in _LIBRARIES:
        try:
            h.update(f"{lib}={importlib.metadata.version(lib)}".encode())
        except importlib.metadata.PackageNotFoundError:
            pass
    return h.hexdigest()
