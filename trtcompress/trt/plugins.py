"""TensorRT plugins at build and run time: shared libraries (``.so``) and Python plugins (``.py``).

A plugin is named by a path, or by the name of a folder under the project's ``plugins/`` (or a
folder in ``TRTCOMPRESS_PLUGIN_PATH``, ``:``-separated), which holds ``lib*.so`` and/or
``trt_plugin.py``. Libraries are loaded through Polygraphy's ``LoadPlugins`` (``ctypes.CDLL``:
their creators register with TensorRT's plugin registry as the library loads); a Python plugin
file is imported once, and registers itself with ``tensorrt.plugin`` (TensorRT 10.6+) when
imported. ``plugins/README.md`` describes the layout and the CPU reference pattern.
"""
from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path
from typing import Iterable

from ..errors import ConfigError

__all__ = ["resolve_plugins", "split_plugins", "load_plugins", "plugin_search_path"]

_LOADED: set[str] = set()


def plugin_search_path() -> list[Path]:
    """Folders searched for a plugin given by name: ``TRTCOMPRESS_PLUGIN_PATH``, then ``plugins/``
    beside the package (a source checkout)."""
    dirs = [Path(p) for p in os.environ.get("TRTCOMPRESS_PLUGIN_PATH", "").split(os.pathsep) if p]
    dirs.append(Path(__file__).resolve().parents[2] / "plugins")
    return dirs


def resolve_plugins(specs: Iterable[str]) -> tuple[str, ...]:
    """Paths of the plugin files ``specs`` name: a ``.so``/``.py`` path as is, a folder or a name
    under :func:`plugin_search_path` as its ``lib*.so`` and ``trt_plugin.py``."""
    out: list[str] = []
    for spec in specs:
        path = Path(spec)
        if path.suffix in (".so", ".py") or path.is_file():
            if not path.is_file():
                raise ConfigError(f"plugin {spec} not found; give the path of a plugin library (.so) or Python plugin (.py)")
            out.append(str(path.resolve()))
            continue
        folder = path if path.is_dir() else next((d / spec for d in plugin_search_path() if (d / spec).is_dir()), None)
        if folder is None:
            raise ConfigError(f"plugin {spec!r} is neither a file nor a folder under {', '.join(map(str, plugin_search_path()))}")
        files = sorted(str(p.resolve()) for p in folder.glob("lib*.so")) + [str(p.resolve()) for p in folder.glob("trt_plugin.py")]
        if not files:
            raise ConfigError(f"plugin folder {folder} holds no lib*.so nor trt_plugin.py; build the library first (see plugins/README.md)")
        out.extend(files)
    return tuple(dict.fromkeys(out))


def split_plugins(paths: Iterable[str]) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(shared libraries, Python plugin files)."""
    paths = tuple(paths)
    return tuple(p for p in paths if not p.endswith(".py")), tuple(p for p in paths if p.endswith(".py"))


def load_plugins(paths: Iterable[str]) -> None:
    """Load every plugin once in this process: libraries through Polygraphy, Python files by import."""
    libraries, python_files = split_plugins(paths)
    if libraries:
        from polygraphy.backend.trt import LoadPlugins

        for lib in libraries:
            if lib in _LOADED:
                continue
            try:
                LoadPlugins(plugins=[lib])()
            except OSError as e:
                raise ConfigError(f"cannot load plugin library {lib}: {e}; build it for this machine's TensorRT and CUDA") from e
            _LOADED.add(lib)
    for file in python_files:
        if file in _LOADED:
            continue
        name = f"trtcompress_plugin_{Path(file).parent.name}_{abs(hash(file))}"
        spec = importlib.util.spec_from_file_location(name, file)
        if spec is None or spec.loader is None:
            raise ConfigError(f"cannot import Python plugin {file}")
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
        _LOADED.add(file)
