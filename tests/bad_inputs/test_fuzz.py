"""Fuzzing: mutated ONNX files (bytes flipped, files cut, protobuf fields removed or changed) and
mutated calibration data (shapes, dtypes, NaN/Inf, names), each through the real CLI. Whatever the
mutation, a verb either works or fails with the tool's own UserError (exit 2, one line); any other
exception escapes ``main`` and fails the test. Seeded, so every run tries the same inputs."""
from __future__ import annotations

import io
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path

import numpy as np
import onnx
import pytest

from trtcompress.cli.main import main
from trtc_support import tiny_classifier

N_BYTES, N_FIELDS, N_CALIB = 24, 16, 20


def _run(argv) -> tuple[int, str]:
    err = io.StringIO()
    with redirect_stderr(err), redirect_stdout(io.StringIO()):
        rc = main([str(a) for a in argv])
    return rc, err.getvalue()


def _assert_clean(rc: int, err: str, verb: str) -> None:
    assert rc in (0, 1, 2), rc
    if rc == 2:
        shown = [ln.split("\r")[-1] for ln in err.split("\n") if ln.split("\r")[-1].strip()]
        assert shown[-1].startswith(f"trtcompress {verb}: error: ") and "Traceback" not in err, err


def _mutate_bytes(data: bytes, rng: np.random.Generator) -> bytes:
    b = bytearray(data)
    kind = rng.integers(3)
    if kind == 0:  # flip a few bytes
        for i in rng.integers(0, len(b), rng.integers(1, 8)):
            b[i] ^= int(rng.integers(1, 256))
        return bytes(b)
    if kind == 1:  # cut the file
        return bytes(b[: int(rng.integers(1, len(b)))])
    i = int(rng.integers(0, len(b)))  # drop a run of bytes
    return bytes(b[:i] + b[i + int(rng.integers(1, 64)) :])


def _mutate_fields(model: onnx.ModelProto, rng: np.random.Generator) -> onnx.ModelProto:
    m = onnx.ModelProto()
    m.CopyFrom(model)
    g = m.graph
    choices = [
        lambda: g.ClearField("input"),
        lambda: g.ClearField("output"),
        lambda: g.initializer.pop(int(rng.integers(len(g.initializer)))),
        lambda: g.node.pop(int(rng.integers(len(g.node)))),
        lambda: m.ClearField("opset_import"),
        lambda: g.node[int(rng.integers(len(g.node)))].input.pop(),
        lambda: g.node[int(rng.integers(len(g.node)))].ClearField("op_type"),
        lambda: setattr(g.input[0].type.tensor_type, "elem_type", int(rng.choice([2, 6, 7, 9, 10, 11]))),
        lambda: g.input[0].type.tensor_type.shape.dim.pop(),
        lambda: setattr(g.input[0].type.tensor_type.shape.dim[1], "dim_value", int(rng.integers(1, 9))),
        lambda: setattr(g.initializer[int(rng.integers(len(g.initializer)))], "data_type", int(rng.choice([1, 3, 7, 10, 11]))),
        lambda: g.initializer[int(rng.integers(len(g.initializer)))].dims.append(2),
        lambda: setattr(g.initializer[0], "raw_data", g.initializer[0].raw_data[: len(g.initializer[0].raw_data) // 2]),
        lambda: setattr(g.node[0], "input", ["nowhere"]) if False else g.node[0].input.__setitem__(0, "nowhere"),
        lambda: g.node[-1].output.__setitem__(0, "renamed"),
        lambda: setattr(m, "ir_version", int(rng.choice([0, 2, 99]))),
    ]
    for k in rng.choice(len(choices), int(rng.integers(1, 3)), replace=False):
        choices[int(k)]()
    return m


@pytest.fixture(scope="module")
def base(tmp_path_factory) -> Path:
    return tiny_classifier(tmp_path_factory.mktemp("fuzz") / "tiny.onnx")


def _exercise(path: Path, base: Path, tmp: Path) -> None:
    for argv in (["inspect", path], ["sparsify", path, "-o", tmp / "s.onnx"], ["compare", base, path, "--data", "random:1"]):
        rc, err = _run(argv)
        _assert_clean(rc, err, argv[0])


@pytest.mark.parametrize("seed", range(N_BYTES))
def test_mutated_onnx_bytes(seed, base, tmp_path):
    rng = np.random.default_rng(seed)
    p = tmp_path / "m.onnx"
    p.write_bytes(_mutate_bytes(base.read_bytes(), rng))
    _exercise(p, base, tmp_path)


@pytest.mark.parametrize("seed", range(N_FIELDS))
def test_mutated_onnx_fields(seed, base, tmp_path):
    rng = np.random.default_rng(1000 + seed)
    p = tmp_path / "m.onnx"
    p.write_bytes(_mutate_fields(onnx.load(str(base)), rng).SerializeToString())
    _exercise(p, base, tmp_path)


def _mutated_feed(rng: np.random.Generator) -> dict[str, np.ndarray]:
    shape = [int(rng.integers(0, 4)), 3, 16, 16]
    kind = int(rng.integers(6))
    if kind == 0:  # another rank or other dims
        shape = [int(d) for d in rng.integers(0, 20, int(rng.integers(0, 6)))]
    elif kind == 1:
        shape[int(rng.integers(1, 4))] = int(rng.integers(0, 40))
    dtype = rng.choice([np.float32, np.float32, np.float16, np.float64, np.int64, np.uint8, np.bool_])
    with np.errstate(over="ignore", invalid="ignore"):
        x = (rng.standard_normal(shape) * 10.0 ** int(rng.integers(-30, 30))).astype(dtype)
    if kind == 2 and x.size:
        x.flat[int(rng.integers(x.size))] = rng.choice([np.nan, np.inf, -np.inf]) if x.dtype.kind == "f" else 0
    name = "x" if kind != 3 else rng.choice(["X", "input", "x "])
    feed = {name: x}
    if kind == 4:
        feed["extra"] = x
    return feed


@pytest.mark.parametrize("seed", range(N_CALIB))
def test_mutated_calibration_data(seed, base, tmp_path):
    rng = np.random.default_rng(2000 + seed)
    calib = tmp_path / "calib"
    calib.mkdir()
    n = int(rng.integers(1, 4))
    bad = int(rng.integers(n + 1))  # which file is mutated; n: none, the data is good
    for i in range(n):
        good = {"x": rng.standard_normal((int(rng.integers(1, 4)), 3, 16, 16)).astype(np.float32)}
        np.savez(calib / f"s{i}.npz", **(_mutated_feed(rng) if i == bad else good))
    out = tmp_path / "out"
    rc, err = _run(["quantize", base, "--calib", calib, "-o", out / "q.onnx", "--no-refine-ranges"])
    _assert_clean(rc, err, "quantize")
    assert rc == 0 or not out.exists() or not any(out.iterdir()), "a failed run left files behind"
    if bad == n:
        assert rc == 0, err
