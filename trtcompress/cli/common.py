"""Argument groups shared by verbs; each maps onto one API object. :class:`Output` is what a verb returns."""
from __future__ import annotations

import argparse
import dataclasses
import typing
from typing import Any, Callable, Iterable, Mapping, Sequence

from ..data.options import DataOptions
from ..progress import note
from ..runners import RunnerOptions


@dataclasses.dataclass(frozen=True)
class Output:
    """A verb's outcome, printed by ``cli.main`` for every verb alike: ``data`` is the JSON document
    ``--json`` prints; ``text`` the human summary (a string, or a function returning one or
    printing it) printed otherwise, never under ``--quiet``; ``code`` the exit status."""

    data: Any
    text: str | Callable[[], str | None] | None = None
    code: int = 0

    def show(self) -> None:
        text = self.text() if callable(self.text) else self.text
        if text:
            print(text)


def log(message: str) -> None:
    """A verb's log line (on stderr; off under --quiet; a progress line being drawn is kept whole)."""
    note(message)


_RUNNER_HELP = {
    "threads": "intra-op threads (0: backend default)",
    "providers": "ONNX Runtime providers in order (cpu, cuda)",
    "plugins": "TensorRT plugin library (.so), Python plugin (.py) or a folder name under plugins/",
    "optimization": "ONNX Runtime graph optimisation; 'basic' runs TensorRT-form Q/DQ models with exact Q/DQ arithmetic",
}


def add_runner_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("runner")
    g.add_argument("--backend", default="onnxrt", help="onnxrt (default, CPU) or trt (needs TensorRT and a GPU)")
    add_config_args(g, RunnerOptions, help=_RUNNER_HELP, split=("providers",), choices={"optimization": ("disable", "basic", "extended", "all")})


def runner_options(args: argparse.Namespace) -> RunnerOptions:
    return config_from_args(args, RunnerOptions)


_DATA_HELP = {
    "batch": "samples per inference; none: as stored (one file, one yielded feed; 1 for random data)",
    "limit": "use at most this many samples",
    "seed": "seed of random inputs",
    "preprocess": "image preprocessing: a preset (imagenet, efficientnet-lite, mnist) and/or key=value,... (resize, crop, mean, std, order, layout, dtype)",
    "inputs": "input shape for dynamic dims, e.g. x:1x3x224x224; a named dimension marks the batch axis, e.g. state:2xNx128",
}


def add_data_args(p: argparse.ArgumentParser, default: str = "random") -> None:
    """``--data`` and the DataOptions flags (``--input`` for its ``inputs``); :func:`data_options` reads them."""
    g = p.add_argument_group("data")
    g.add_argument("--data", default=default, help="random[:N], a directory of .npz/.npy files, or an image folder (default: %(default)s)")
    add_config_args(g, DataOptions, help=_DATA_HELP, flags={"inputs": "--input"}, split=(), metavars={"inputs": "NAME:DIMS[:DTYPE]"})


def data_options(args: argparse.Namespace) -> DataOptions:
    """The data group's flags (:func:`add_data_args`) as DataOptions; a flag not given keeps its default."""
    return config_from_args(args, DataOptions)


# the calibration-data fields of the stages whose rules measure layer outputs (lowrank's and
# share's error rules): one spelling of their flags for both verbs
CALIB_DATA_HELP = {
    "calib": "calibration data of the error rule: random[:N], a directory of .npz/.npy files, or an image folder",
    "preprocess": "image preprocessing of --data: a preset (imagenet, efficientnet-lite, mnist) and/or key=value,...",
    "limit": "calibration samples used",
    "batch": "calibration samples per inference",
    "inputs": "shape of a dynamic input of the calibration data, e.g. x:1x3x224x224 (NAME:DIMS[:DTYPE])",
}
CALIB_DATA_FLAGS = {"calib": "--data", "inputs": "--input"}
CALIB_DATA_METAVARS = {"calib": "DATA", "inputs": "NAME:DIMS[:DTYPE]"}


def add_config_args(
    p: argparse.ArgumentParser | argparse._ArgumentGroup,
    config_type: type,
    *,
    skip: Iterable[str] = (),
    flags: Mapping[str, str] | None = None,
    help: Mapping[str, str] | None = None,
    choices: Mapping[str, Sequence[Any]] | None = None,
    split: Iterable[str] | None = None,
    metavars: Mapping[str, str] | None = None,
    defaults: Any = None,
) -> None:
    """One flag per field of the config dataclass ``config_type``, so a default lives in one place.

    ``defaults``: an instance whose values the help shows instead of the dataclass's (a job that
    holds the config with other defaults: compress's benchmark).

    ``--field-name`` (or ``flags[field]``), typed from the field's hint; the default shown is the
    dataclass's, while the parsed value stays None unless given (:func:`config_from_args` keeps
    the dataclass default, or a --config file's value, for flags not given). Bools are
    ``--x``/``--no-x``; tuples are repeatable flags (``split``: fields whose values are also split
    on commas; default: all but pattern lists, whose patterns may hold commas). Help comes from
    ``help[field]``, else the field's metadata ``help``. Nested configs and mappings get no flag.
    """
    flags, help, choices = dict(flags or {}), dict(help or {}), dict(choices or {})
    skip = set(skip)
    hints = _config_hints(config_type)
    for f in dataclasses.fields(config_type):
        if f.name in skip:
            continue
        kind, conv, literal = _flag_kind(hints[f.name])
        if kind is None:
            continue
        if any(a.dest == f.name for a in p._actions):  # two configs' fields on one parser must not share a name
            raise ValueError(f"flag for {config_type.__name__}.{f.name}: the parser already has a flag for {f.name!r}; skip one")
        default = getattr(defaults, f.name) if defaults is not None else f.default if f.default is not dataclasses.MISSING else f.default_factory()  # type: ignore[misc]
        text = help.get(f.name) or f.metadata.get("help") or f.name.replace("_", " ")
        shown = ",".join(map(str, default)) if isinstance(default, tuple) else default
        shown = "none" if shown in (None, "") else shown
        kwargs: dict[str, Any] = {"dest": f.name, "default": None}
        if metavars and f.name in metavars:
            kwargs["metavar"] = metavars[f.name]
        if f.name in choices:
            kwargs["choices"] = tuple(choices[f.name])
        elif literal:
            kwargs["choices"] = literal
        name = flags.get(f.name, "--" + f.name.replace("_", "-"))
        if kind == "bool":
            p.add_argument(name, action=argparse.BooleanOptionalAction, help=f"{text} (default: {'on' if default else 'off'})", **kwargs)
        elif kind == "tuple":
            splits = split is None and f.name not in ("include", "exclude") or split is not None and f.name in set(split)
            kwargs["type"] = _comma_list(conv) if splits else _one_item(conv)
            p.add_argument(name, action="extend", help=f"{text} ({'comma-separated, ' if splits else ''}repeatable; default: {shown or 'none'})", **kwargs)
        else:
            p.add_argument(name, type=conv, help=f"{text} (default: {shown})", **kwargs)


def given_args(args: argparse.Namespace, config_type: type) -> dict[str, Any]:
    """The fields of ``config_type`` given on the command line (flags left out are None)."""
    return {f.name: getattr(args, f.name) for f in dataclasses.fields(config_type) if getattr(args, f.name, None) is not None}


def config_from_args(args: argparse.Namespace, config_type: type, base: Any = None, **overrides: Any) -> Any:
    """The config from ``base`` (default: the dataclass defaults) with every flag given on the
    command line, then ``overrides`` (values not None)."""
    changes = given_args(args, config_type)
    changes.update({k: v for k, v in overrides.items() if v is not None})
    base = base if base is not None else config_type()
    return base.replace(**changes)


def _config_hints(config_type: type) -> dict[str, Any]:
    return typing.get_type_hints(config_type)


def _flag_kind(hint: Any) -> tuple[str | None, Any, tuple]:
    """('bool' | 'tuple' | 'scalar' | None, converter of one value, Literal choices) for a hint."""
    import types

    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        inner = [a for a in args if a is not type(None)]
        return _flag_kind(inner[0]) if len(inner) == 1 else (None, None, ())
    if hint is bool:
        return "bool", None, ()
    if origin is tuple and len(args) == 2 and args[1] is Ellipsis and args[0] in (str, int, float):
        return "tuple", args[0], ()
    if origin is typing.Literal:
        return "scalar", type(args[0]), args
    if hint in (str, int, float):
        return "scalar", hint, ()
    return None, None, ()


def _one_item(conv: Callable[[str], Any]) -> Callable[[str], list]:
    def one(text: str) -> list:
        return [conv(text)]

    one.__name__ = conv.__name__  # argparse names it in "invalid int value"
    return one


def _comma_list(conv: Callable[[str], Any]) -> Callable[[str], list]:
    def items(text: str) -> list:
        return [conv(t.strip()) for t in text.split(",") if t.strip()]

    items.__name__ = f"comma-separated {conv.__name__}"
    return items


def add_normalize_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--no-normalize", action="store_true",
                   help="take the graph as it is: no normalize stage first (constant/shape folding, Pad and BatchNorm folds, no-op removal) and no cleanup after")


def run_normalized(stage, model, config, args: argparse.Namespace):
    """Normalize first and clean up after, unless ``--no-normalize``."""
    from ..stages.normalize import with_normalize

    return with_normalize(stage, model, config, enabled=not getattr(args, "no_normalize", False))


def normalize_line(report: dict) -> str | None:
    n = report.get("normalize")
    if not n:
        return None
    done = ", ".join(f"{k} {v}" for k, v in sorted(n["ops_removed"].items())) or "nothing to remove"
    return f"normalized: {n['nodes_before']} -> {n['nodes_after']} nodes ({done})"


def add_stage_verb_args(p: argparse.ArgumentParser, what: str) -> None:
    """The arguments every one-stage verb (sparsify, lowrank, share) takes besides its config."""
    p.add_argument("model", help="ONNX file")
    p.add_argument("-o", "--output", required=True, help=f"where to write the {what} ONNX file")
    p.add_argument("--report", default=None, metavar="JSON", help="write the full report to this file")
    add_normalize_arg(p)


def run_stage_verb(args: argparse.Namespace, stage, config_type, summary) -> Output:
    """Run ``stage`` (normalized first unless --no-normalize) on ``args.model`` with the config the
    flags give, write the model and the report; ``summary(report, config)`` prints the human lines."""
    from ..fileio import write_json
    from ..model_io import load_model, save_model

    config = config_from_args(args, config_type)
    result = run_normalized(stage, load_model(args.model), config, args)
    save_model(result.model, args.output)
    report = result.report
    if args.report:
        write_json(args.report, report)

    def show() -> None:
        if normalize_line(report):
            print(normalize_line(report))
        summary(report, config)
        print(f"wrote {args.output}")

    return Output({**report, "written": [str(args.output)] + ([str(args.report)] if args.report else [])}, show)
