"""The versioned schema of ``report.json`` (``schema.json`` beside this file) and a validator.

The validator covers the JSON Schema keywords ``schema.json`` uses (type, enum, const,
properties, required, additionalProperties, propertyNames/pattern, items, minItems, maxItems,
minimum, $ref to ``#/$defs``, if/then/else), so ``trtcompress report`` checks a report without
the ``jsonschema`` package; the tests check with ``jsonschema`` too where it is installed, so the
two cannot drift apart unnoticed.
"""
from __future__ import annotations

import functools
import json
import re
from pathlib import Path
from typing import Any

__all__ = ["SCHEMA_VERSION", "SCHEMA_PATH", "schema", "validate"]

SCHEMA_VERSION = 1
SCHEMA_PATH = Path(__file__).with_name("schema.json")
_KEYWORDS = {"$schema", "$id", "$defs", "title", "description", "type", "enum", "const", "properties", "required",
             "additionalProperties", "propertyNames", "pattern", "items", "minItems", "maxItems", "minimum",
             "$ref", "if", "then", "else"}
_TYPES = {
    "object": lambda v: isinstance(v, dict),
    "array": lambda v: isinstance(v, list),
    "string": lambda v: isinstance(v, str),
    "integer": lambda v: isinstance(v, int) and not isinstance(v, bool),
    "number": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
    "boolean": lambda v: isinstance(v, bool),
    "null": lambda v: v is None,
}


@functools.lru_cache(maxsize=1)
def schema() -> dict[str, Any]:
    """The JSON Schema of report.json (draft 2020-12)."""
    return json.loads(SCHEMA_PATH.read_text())


def validate(report: Any, limit: int = 20) -> list[str]:
    """Where ``report`` departs from the schema: up to ``limit`` lines ``$.path: what``; none when it conforms."""
    root = schema()
    errors: list[str] = []
    _check(report, root, root, "$", errors)
    return errors[:limit]


def _check(value: Any, s: dict[str, Any], root: dict[str, Any], path: str, errors: list[str]) -> None:
    unknown = set(s) - _KEYWORDS
    if unknown:  # a keyword this validator would silently ignore: the schema outgrew it
        raise ValueError(f"schema keyword(s) {sorted(unknown)} at {path} are not supported by trtcompress.report.schema")
    if "$ref" in s:
        ref = s["$ref"]
        if not ref.startswith("#/$defs/"):
            raise ValueError(f"only local #/$defs/ references are supported, got {ref}")
        _check(value, root["$defs"][ref[len("#/$defs/"):]], root, path, errors)
    if "type" in s:
        types = s["type"] if isinstance(s["type"], list) else [s["type"]]
        if not any(_TYPES[t](value) for t in types):
            errors.append(f"{path}: expected {' or '.join(types)}, got {_kind(value)}")
            return
    if "const" in s and value != s["const"]:
        errors.append(f"{path}: expected {s['const']!r}, got {value!r}")
    if "enum" in s and value not in s["enum"]:
        errors.append(f"{path}: expected one of {s['enum']}, got {value!r}")
    if "minimum" in s and _TYPES["number"](value) and value < s["minimum"]:
        errors.append(f"{path}: {value} is below the minimum {s['minimum']}")
    if "pattern" in s and isinstance(value, str) and not re.search(s["pattern"], value):
        errors.append(f"{path}: {value!r} does not match {s['pattern']}")
    if isinstance(value, dict):
        _check_object(value, s, root, path, errors)
    if isinstance(value, list):
        if "minItems" in s and len(value) < s["minItems"]:
            errors.append(f"{path}: {len(value)} items, fewer than {s['minItems']}")
        if "maxItems" in s and len(value) > s["maxItems"]:
            errors.append(f"{path}: {len(value)} items, more than {s['maxItems']}")
        if "items" in s:
            for i, item in enumerate(value):
                _check(item, s["items"], root, f"{path}[{i}]", errors)
    if "if" in s:
        probe: list[str] = []
        _check(value, s["if"], root, path, probe)
        branch = s.get("then") if not probe else s.get("else")
        if branch is not None:
            _check(value, branch, root, path, errors)


def _check_object(value: dict, s: dict[str, Any], root: dict[str, Any], path: str, errors: list[str]) -> None:
    for key in s.get("required", []):
        if key not in value:
            errors.append(f"{path}: missing required field {key!r}")
    props = s.get("properties", {})
    for key, item in value.items():
        sub = f"{path}.{key}"
        if "propertyNames" in s:
            _check(key, s["propertyNames"], root, f"{sub} (name)", errors)
        if key in props:
            _check(item, props[key], root, sub, errors)
        elif s.get("additionalProperties") is False:
            errors.append(f"{path}: unexpected field {key!r}")
        elif isinstance(s.get("additionalProperties"), dict):
            _check(item, s["additionalProperties"], root, sub, errors)


def _kind(value: Any) -> str:
    return {dict: "object", list: "array", str: "string", bool: "boolean", type(None): "null"}.get(type(value), type(value).__name__)
