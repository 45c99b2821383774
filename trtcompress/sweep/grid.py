"""A sweep's grid: axes of values over a base compress config; the variants are their product.

A grid file (TOML or JSON) holds ``[grid]``, one list of values per axis, and optionally
``recipe`` (a recipe file, relative to the grid file) and ``[base]`` (recipe keys) for what every
variant shares; ``--set KEY=V1,V2`` adds or replaces an axis. An axis is one of:

- a named axis (:data:`AXES`): ``calibration`` (the quantize stage's method), ``target`` (its
  cpu/tensorrt form), ``sparsity`` (a 2:4 sparsify stage on or off), ``rank`` (a low-rank stage
  at this fraction of the dense FLOPs, or off), ``precision`` (int8: a quantize stage; fp32: none);
- ``STAGE.FIELD``: any field of a registered stage's config (``quantize.per_channel``), set where
  the variant has that stage;
- a field of the compress config (``target_trt``, ``backend``) or of its nested configs
  (``bench.iterations``, ``export.opset``).

An axis that does not apply to a variant (a calibration method of a variant without quantize)
is left out of its name, and variants that come out the same are run once. Every variant's
config is a :class:`~trtcompress.job.CompressConfig`, validated before anything runs.
"""
from __future__ import annotations

import copy
import dataclasses
import itertools
import re
import tomllib
import typing
from pathlib import Path
from typing import Any, Callable, Sequence

from ..errors import ConfigError

__all__ = ["AXES", "Axis", "VariantPlan", "read_grid", "parse_set", "expand", "make_axis", "GRID_FILE_KEYS"]

GRID_FILE_KEYS = ("grid", "base", "recipe")
# the order stages take when an axis adds one (each stage's contract refuses the others: low-rank
# after 2:4, anything after quantize)
STAGE_ORDER = ("normalize", "lowrank", "share", "sparsify", "finetune", "quantize")
# compress fields a grid cannot vary: the sweep sets them for every variant
_SET_BY_SWEEP = ("model", "name", "runs_dir", "overwrite", "resume", "stages")


@dataclasses.dataclass(frozen=True)
class Axis:
    key: str
    values: tuple[Any, ...]


@dataclasses.dataclass(frozen=True)
class VariantPlan:
    """One variant: its run name, the axis values that shaped it, and its compress config."""

    name: str
    axes: dict[str, Any]
    config: Any  # CompressConfig


Apply = Callable[[dict, Any], bool]  # changes a config mapping; False where the axis does not apply


@dataclasses.dataclass(frozen=True)
class _Named:
    help: str
    apply: Apply
    values: Callable[[Any], Any] = lambda v: v  # checks (and normalises) one value


def _stages(d: dict) -> list[dict]:
    return d.setdefault("stages", [])


def _find(d: dict, stage: str) -> dict | None:
    return next((s for s in _stages(d) if s.get("stage") == stage), None)


def _add(d: dict, stage: str, options: dict | None = None) -> dict:
    """The variant's ``stage`` (added where :data:`STAGE_ORDER` puts it, when missing) with ``options`` set."""
    found = _find(d, stage)
    if found is None:
        found = {"stage": stage}
        rank = STAGE_ORDER.index(stage)
        stages = _stages(d)
        at = next((i for i, s in enumerate(stages) if s.get("stage") in STAGE_ORDER and STAGE_ORDER.index(s["stage"]) > rank), len(stages))
        stages.insert(at, found)
    found.update(options or {})
    return found


def _drop(d: dict, stage: str) -> None:
    d["stages"] = [s for s in _stages(d) if s.get("stage") != stage]


def _set_field(stage: str, field: str) -> Apply:
    def apply(d: dict, v: Any) -> bool:
        found = _find(d, stage)
        if found is None:
            return False
        found[field] = v
        return True

    return apply


def _switch(v: Any) -> bool:
    text = v.lower() if isinstance(v, str) else v
    if text is True or text == "on":
        return True
    if text is False or text == "off":
        return False
    raise ValueError("on or off (true or false)")


def _sparsity(d: dict, on: bool) -> bool:
    _add(d, "sparsify") if on else _drop(d, "sparsify")
    return True


def _rank_value(v: Any) -> float | None:
    if v is False or isinstance(v, str) and v.lower() in ("off", "none"):
        return None
    if isinstance(v, (int, float)) and not isinstance(v, bool) and 0.0 < v < 1.0:
        return float(v)
    raise ValueError("a fraction of the dense FLOPs in (0, 1), or off")


def _rank(d: dict, fraction: float | None) -> bool:
    if fraction is None:
        _drop(d, "lowrank")
    else:
        _add(d, "lowrank", {"rule": "flops", "flop_fraction": fraction})
    return True


_PRECISIONS = ("int8", "fp32")


def _precision_value(v: Any) -> str:
    if v not in _PRECISIONS:
        raise ValueError(f"one of {', '.join(_PRECISIONS)} (fp16 is a TensorRT build option: trtcompress build --fp16)")
    return v


def _precision(d: dict, v: str) -> bool:
    _add(d, "quantize") if v == "int8" else _drop(d, "quantize")
    return True


# named axes: adding one is one entry here
AXES: dict[str, _Named] = {
    "calibration": _Named("the quantize stage's calibration method (entropy, max, percentile, mse)", _set_field("quantize", "method")),
    "target": _Named("the quantize stage's form: tensorrt (Q/DQ) or cpu (ONNX Runtime integer ops)", _set_field("quantize", "target")),
    "sparsity": _Named("a 2:4 sparsify stage: on or off", _sparsity, _switch),
    "rank": _Named("a low-rank stage keeping this fraction of the dense FLOPs (rule flops), or off", _rank, _rank_value),
    "precision": _Named("int8 (a quantize stage) or fp32 (none)", _precision, _precision_value),
}


def _rule(key: str) -> tuple[Apply, Callable[[Any], Any], Any]:
    """How axis ``key`` changes a config mapping, its value check and the type hint of the field it
    sets (None for a named axis); a ConfigError naming the key for one that is not an axis."""
    from ..job import CompressConfig
    from ..stage import registered_stages

    if key in AXES:
        return AXES[key].apply, AXES[key].values, None
    fields = {f.name: f for f in dataclasses.fields(CompressConfig)}
    head, _, tail = key.partition(".")
    stages = registered_stages()
    known = (f"named axes {', '.join(AXES)}; STAGE.FIELD for a stage's option ({', '.join(sorted(stages))}); "
             "or a compress option (target_trt, bench.iterations, ...)")
    if head in _SET_BY_SWEEP:
        raise ConfigError(f"grid key {key!r}: the sweep sets {head} for every variant; choose another axis ({known})")
    if tail and head in stages:
        names = {f.name for f in dataclasses.fields(stages[head])}
        if tail not in names:
            raise ConfigError(f"grid key {key!r}: stage {head} has no option {tail!r}; known: {', '.join(sorted(names))}")
        return _set_field(head, tail), lambda v: v, typing.get_type_hints(stages[head])[tail]
    if head in fields and not tail:
        def top(d: dict, v: Any) -> bool:
            d[key] = v
            return True

        return top, lambda v: v, typing.get_type_hints(CompressConfig)[key]
    nested = fields.get(head)
    if tail and nested is not None and dataclasses.is_dataclass(nested.default):
        names = {f.name for f in dataclasses.fields(nested.default)}
        if tail not in names:
            raise ConfigError(f"grid key {key!r}: {head} has no option {tail!r}; known: {', '.join(sorted(names))}")

        def inner(d: dict, v: Any) -> bool:
            d.setdefault(head, {})[tail] = v
            return True

        return inner, lambda v: v, typing.get_type_hints(type(nested.default))[tail]
    raise ConfigError(f"grid key {key!r} is not an axis; known: {known}")


def make_axis(key: str, values: Any, text: bool = False) -> Axis:
    """The axis ``key`` with ``values`` checked; ``text``: the values are command-line text, read as
    the type of the field they set (``10.3`` stays text for a version, ``0.5`` is a number)."""
    if not isinstance(values, (list, tuple)) or not values:
        raise ConfigError(f"grid key {key!r} must be a non-empty list of values, got {values!r}")
    _, check, hint = _rule(key)
    if text:
        values = [_from_text(hint, v) for v in values]
    out = []
    for v in values:
        try:
            v = check(v)
        except ValueError as e:
            raise ConfigError(f"grid key {key!r}: value {v!r} must be {e}") from None
        if v in out:
            raise ConfigError(f"grid key {key!r} lists {v!r} twice")
        out.append(v)
    return Axis(key, tuple(out))


def read_grid(path: str | Path) -> tuple[list[Axis], dict[str, Any]]:
    """The axes and the base recipe mapping (``recipe`` file, then ``[base]``) of a grid file."""
    from ..recipe import read_recipe

    data = read_recipe(path)
    unknown = sorted(set(data) - set(GRID_FILE_KEYS))
    if unknown:
        raise ConfigError(f"grid file {path}: unknown key {unknown[0]!r}; known: {', '.join(GRID_FILE_KEYS)} (axes go under [grid])")
    grid = data.get("grid", {})
    if not isinstance(grid, dict):
        raise ConfigError(f"grid file {path}: [grid] must be a table of axes (KEY = [values]), got {type(grid).__name__}")
    base: dict[str, Any] = {}
    if "recipe" in data:
        recipe = Path(str(data["recipe"]))
        base.update(read_recipe(recipe if recipe.is_absolute() else Path(path).parent / recipe))
    extra = data.get("base", {})
    if not isinstance(extra, dict):
        raise ConfigError(f"grid file {path}: [base] must be a table of recipe keys, got {type(extra).__name__}")
    base.update(extra)
    return [make_axis(k, v) for k, v in grid.items()], base


def parse_set(text: str) -> Axis:
    """``KEY=V1,V2``: each value read as a TOML value (true, 0.5, 8) or else as the text it is."""
    key, eq, values = text.partition("=")
    key = key.strip()
    if not eq or not key or not values.strip():
        raise ConfigError(f"--set {text!r}: write KEY=VALUE[,VALUE...], e.g. --set calibration=entropy,max")
    return make_axis(key, [v.strip() for v in values.split(",") if v.strip()], text=True)


def _from_text(hint: Any, text: str) -> Any:
    """``text`` as a TOML value (true, 0.5, 8) where the field takes that, else as the text it is."""
    from ..config import _conform

    value = _literal(text)
    if hint is None or _conform(hint, value)[0] or not _conform(hint, text)[0]:
        return value
    return text


def _literal(text: str) -> Any:
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


def _label(v: Any) -> str:
    if isinstance(v, bool):
        return "on" if v else "off"
    if v is None:
        return "off"
    if isinstance(v, float):
        return f"{v:g}"
    if isinstance(v, (list, tuple)):
        return "+".join(_label(x) for x in v)
    return re.sub(r"[^A-Za-z0-9._+-]+", "-", str(v)).strip("-") or "x"


def expand(base: Any, axes: Sequence[Axis], runs_dir: str) -> list[VariantPlan]:
    """Every variant of ``axes`` over ``base`` (a CompressConfig), named by the axis values that
    apply to it, each a validated CompressConfig in ``runs_dir``; a variant that comes out the same
    as an earlier one is left out."""
    from ..job import CompressConfig

    keys = [a.key for a in axes]
    if len(set(keys)) != len(keys):
        dup = next(k for k in keys if keys.count(k) > 1)
        raise ConfigError(f"grid key {dup!r} is given twice")
    rules = {a.key: _rule(a.key)[0] for a in axes}
    start = base.to_dict()
    plans: list[VariantPlan] = []
    seen: dict[str, str] = {}
    used: set[str] = set()
    # variants in the grid's order; within one, the structural axes (adding or dropping stages)
    # apply first, so a field axis sees the stages it sets
    order = sorted(range(len(axes)), key=lambda i: (axes[i].key not in ("precision", "sparsity", "rank"), i))
    for combo in itertools.product(*(a.values for a in axes)):
        d = copy.deepcopy(start)
        applied: dict[str, Any] = {}
        for i in order:
            if rules[axes[i].key](d, combo[i]):
                applied[axes[i].key] = combo[i]
        applied = {k: applied[k] for k in keys if k in applied}  # named in the grid's order
        name = "_".join(f"{k}-{_label(v)}" for k, v in applied.items()) or "base"
        d.update(name=name, runs_dir=runs_dir, overwrite=False, resume=False)  # the sweep decides those per run
        try:
            config = CompressConfig.from_dict(d)
        except ConfigError as e:
            raise ConfigError(f"grid variant {name}: {e}") from None
        same = {k: v for k, v in config.to_dict().items() if k != "name"}
        key = repr(same)
        if key in seen:
            continue
        if name in {p.name for p in plans}:
            raise ConfigError(f"grid variants share the name {name}: give the axes values that differ in their text")
        seen[key] = name
        used.update(applied)
        plans.append(VariantPlan(name, applied, config))
    unused = [k for k in keys if k not in used]
    if unused:
        stage = unused[0].partition(".")[0]
        what = {"calibration": "quantize", "target": "quantize"}.get(unused[0], stage)
        raise ConfigError(f"grid key {unused[0]!r} applies to no variant: no variant has a {what} stage; "
                          f"add it to --stages (or the recipe), or add a precision axis with int8")
    return plans
