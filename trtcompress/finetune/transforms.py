"""Ways to derive a student from the teacher, registered by name.

A transform takes a copy of the teacher and a spec of ``key=value`` options and changes the copy
in place, returning a JSON report. Other compression methods add themselves with
:func:`register_transform`.
"""
from __future__ import annotations

import copy
import dataclasses
import typing
from typing import Any, Callable

from ..errors import ConfigError

__all__ = ["register_transform", "apply_transform", "registered_transforms", "parse_options"]

Transform = Callable[[Any, dict[str, str], Any], dict[str, Any]]
_TRANSFORMS: dict[str, Transform] = {}


def register_transform(name: str):
    def deco(fn: Transform) -> Transform:
        _TRANSFORMS[name] = fn
        return fn

    return deco


def registered_transforms() -> list[str]:
    return sorted(_TRANSFORMS)


def parse_options(text: str) -> dict[str, str]:
    """``a=1,b=x`` -> {"a": "1", "b": "x"}."""
    out = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        key, sep, value = part.partition("=")
        if not sep:
            raise ConfigError(f"transform option {part!r} must be key=value")
        out[key.strip()] = value.strip()
    return out


def config_from_options(cls, options: dict[str, str]):
    """Build a Config from string options, converting each by the field's type."""
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    kwargs = {}
    for k, v in options.items():
        if k not in names:
            raise ConfigError(f"{cls.__name__}: unknown option {k!r}; known: {', '.join(sorted(names))}")
        kwargs[k] = _convert(hints[k], v, k)
    return cls(**kwargs)


def _convert(hint, v: str, key: str):
    if typing.get_origin(hint) is tuple:
        return tuple(x for x in v.split("+") if x)
    args = typing.get_args(hint)
    if type(None) in args and v.lower() == "none":
        return None
    target = next((a for a in args if a is not type(None)), hint)
    try:
        if target is bool:
            return v.lower() in ("1", "true", "yes")
        if target in (int, float):
            return target(v)
    except ValueError:
        raise ConfigError(f"option {key}={v!r} must be a {target.__name__}") from None
    return v


def apply_transform(spec: str, teacher, example_input=None) -> tuple[Any, dict[str, Any]]:
    """A student made from a deep copy of ``teacher`` by the transform ``NAME[:key=value,...]``."""
    name, _, rest = spec.partition(":")
    if name not in _TRANSFORMS:
        raise ConfigError(f"unknown student transform {name!r}; known: {', '.join(registered_transforms())}")
    student = copy.deepcopy(teacher)
    for p in student.parameters():  # a teacher used for distillation has its gradients turned off
        p.requires_grad_(True)
    report = _TRANSFORMS[name](student, parse_options(rest), example_input)
    for p in student.parameters():
        p.requires_grad_(True)
    return student, report


@register_transform("lowrank")
def _lowrank(student, options: dict[str, str], example_input) -> dict[str, Any]:
    from ..lowrank import LowRankConfig
    from ..lowrank.torch_modules import factorize_module

    config = config_from_options(LowRankConfig, options)
    return factorize_module(student, config, example_inputs=example_input).to_dict()


@register_transform("2to4")
def _sparse24(student, options: dict[str, str], example_input) -> dict[str, Any]:
    """2:4 pruning with masks that hold through training by themselves (trtcompress.sparsity)."""
    try:
        from ..sparsity.torch_masks import Sparse24Config, sparse24_student
    except ImportError as e:
        raise ConfigError(f"the 2to4 transform needs trtcompress.sparsity, which this installation lacks ({e})") from e
    _, report = sparse24_student(student, config_from_options(Sparse24Config, options))
    return report
