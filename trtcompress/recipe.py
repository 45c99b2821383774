"""Recipe files: a compress config as TOML or JSON, read with one-line errors and written back.

A recipe is what :meth:`CompressConfig.to_dict` holds (stages with their options, data, targets,
thresholds), so the file a run writes (``runs/<name>/recipe.toml``) reads back to the same config.

TOML is written by :func:`toml_text`, a small writer for the shapes configs produce (scalars,
lists, nested mappings, lists of mappings as ``[[stages]]``), rather than by a new dependency:
recipes are core, and the writer is checked on every write by reading its text back with the
standard library's ``tomllib`` (:func:`recipe_text`). TOML has no null: a ``None`` is left out,
which reads back as the field's default; where that default is not ``None`` the TOML cannot hold
the config and the run writes ``recipe.json`` instead.
"""
from __future__ import annotations

import json
import math
import os
import re
from pathlib import Path
from typing import Any

import tomllib

from .errors import ConfigError

__all__ = ["RECIPE_FORMATS", "read_recipe", "recipe_text", "toml_text", "write_run_recipe"]

RECIPE_FORMATS = (".toml", ".json")


def read_recipe(path: str | os.PathLike) -> dict[str, Any]:
    """The mapping a recipe file holds: TOML for ``.toml``, JSON for ``.json`` (and, for another
    suffix, whichever of the two parses)."""
    p = Path(path)
    try:
        text = p.read_text()
    except FileNotFoundError:
        raise ConfigError(f"recipe not found: {path}") from None
    except (IsADirectoryError, UnicodeDecodeError) as e:
        raise ConfigError(f"recipe {path} is not a text file ({e.__class__.__name__}); give a .toml or .json file") from None
    suffix = p.suffix.lower()
    parsers = [_toml] if suffix == ".toml" else [_json] if suffix == ".json" else [_json, _toml]
    errors = []
    for parse in parsers:
        try:
            data = parse(text)
            break
        except ValueError as e:  # JSONDecodeError and TOMLDecodeError are ValueErrors
            errors.append(f"not valid {parse.__doc__}: {e}")
    else:
        raise ConfigError(f"recipe {path} is {' and '.join(errors)}")
    if not isinstance(data, dict):
        raise ConfigError(f"recipe {path} must hold a mapping (a TOML document or a JSON object), got {type(data).__name__}")
    return data


def _toml(text: str) -> Any:
    """TOML"""
    return tomllib.loads(text)


def _json(text: str) -> Any:
    """JSON"""
    return json.loads(text)


def recipe_text(config: Any, suffix: str = ".toml") -> str:
    """``config`` (a CompressConfig) as the text of a recipe file; ``.toml`` is checked by reading it
    back, and a config it cannot hold (a ``None`` where the default is not) is a ConfigError."""
    d = config.to_dict()
    if suffix == ".json":
        return json.dumps(d, indent=2) + "\n"
    text = toml_text(d)
    back = type(config).from_dict(tomllib.loads(text)).to_dict()
    if back != d:
        lost = sorted(k for k in set(d) | set(back) if d.get(k) != back.get(k))
        raise ConfigError(f"TOML cannot hold this config's {', '.join(lost)} (TOML has no null); write it as JSON")
    return text


# how to treat what is already there, not what the run is: a recipe that kept them would replace
# its own run when read back
_ACTIONS = {"overwrite": False, "resume": False}


def write_run_recipe(run: Any, config: Any) -> str:
    """Write ``config`` (without ``overwrite``/``resume``) into the run directory ``run`` (a RunDir)
    as ``recipe.toml`` (``recipe.json`` where TOML cannot hold it); returns its name there."""
    from .fileio import write_text

    config = config.replace(**_ACTIONS)
    try:
        text, name = recipe_text(config), "recipe.toml"
    except ConfigError:
        text, name = recipe_text(config, ".json"), "recipe.json"
    write_text(run.path / name, text)
    return name


_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")


def toml_text(d: dict[str, Any]) -> str:
    """``d`` as a TOML document: scalars and inline lists first, then sub-tables, then arrays of
    tables; ``None`` values are left out."""
    lines: list[str] = []
    _table(lines, [], d)
    return "\n".join(lines).strip("\n") + "\n"


def _table(lines: list[str], path: list[str], d: dict[str, Any]) -> None:
    tables = {k: v for k, v in d.items() if isinstance(v, dict)}
    arrays = {k: v for k, v in d.items() if _is_table_array(v)}
    for k, v in d.items():
        if v is None or k in tables or k in arrays:
            continue
        lines.append(f"{_key(k)} = {_value(v)}")
    for k, v in tables.items():
        lines += ["", f"[{_dotted(path + [k])}]"]
        _table(lines, path + [k], v)
    for k, items in arrays.items():
        for item in items:
            lines += ["", f"[[{_dotted(path + [k])}]]"]
            _table(lines, path + [k], item)


def _is_table_array(v: Any) -> bool:
    return isinstance(v, list) and bool(v) and all(isinstance(x, dict) for x in v)


def _dotted(path: list[str]) -> str:
    return ".".join(_key(k) for k in path)


def _key(k: Any) -> str:
    k = str(k)
    return k if _BARE_KEY.fullmatch(k) else _string(k)


def _value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        if math.isnan(v):
            return "nan"
        if math.isinf(v):
            return "inf" if v > 0 else "-inf"
        return repr(v)  # shortest round-tripping form: 0.1, 1e-05, 100000.0 (all valid TOML floats)
    if isinstance(v, str):
        return _string(v)
    if isinstance(v, (list, tuple)):
        if any(x is None for x in v):
            raise ConfigError("TOML cannot hold a null inside a list; write the recipe as JSON")
        return "[" + ", ".join(_value(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{" + ", ".join(f"{_key(k)} = {_value(x)}" for k, x in v.items() if x is not None) + "}"
    raise ConfigError(f"TOML cannot hold a {type(v).__name__} ({v!r})")


# what a TOML basic string must escape: backslash, quote, and control characters but tab
_ESCAPES = {"\\": "\\\\", '"': '\\"', "\b": "\\b", "\n": "\\n", "\f": "\\f", "\r": "\\r"}


def _string(s: str) -> str:
    out = []
    for ch in s:
        if ch in _ESCAPES:
            out.append(_ESCAPES[ch])
        elif (ord(ch) < 0x20 and ch != "\t") or ord(ch) == 0x7F:
            out.append(f"\\u{ord(ch):04x}")
        else:
            out.append(ch)  # TOML is UTF-8: other characters stand as they are
    return '"' + "".join(out) + '"'
