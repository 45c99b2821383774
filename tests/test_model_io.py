from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from trtcompress.errors import ModelError
from trtcompress.model_io import PROTOBUF_LIMIT, check_model, file_size, infer_shapes, load_model, save_model


def test_round_trip_single_file(tiny_model, tmp_path):
    m = load_model(tiny_model)
    out = save_model(m, tmp_path / "out" / "m.onnx")
    assert out.exists() and not (out.parent / "m.onnx.data").exists()
    again = load_model(out)
    for a, b in zip(m.graph.initializer, again.graph.initializer):
        np.testing.assert_array_equal(numpy_helper.to_array(a), numpy_helper.to_array(b))


def test_external_data_when_asked(tiny_model, tmp_path):
    m = load_model(tiny_model)
    out = save_model(m, tmp_path / "m.onnx", external_data=True)
    assert (tmp_path / "m.onnx.data").exists()
    assert file_size(out) > out.stat().st_size
    sess = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    ref = ort.InferenceSession(str(tiny_model), providers=["CPUExecutionProvider"])
    x = np.random.default_rng(0).standard_normal((2, 3, 16, 16)).astype(np.float32)
    np.testing.assert_allclose(sess.run(None, {"x": x})[0], ref.run(None, {"x": x})[0], rtol=1e-6)
    # saving again as one file removes the stale data file
    save_model(load_model(out), tmp_path / "m.onnx", external_data=False)
    assert not (tmp_path / "m.onnx.data").exists()


@pytest.mark.parametrize(
    "make, match",
    [
        (lambda p: None, "not found"),
        (lambda p: p.write_bytes(b""), "empty"),
        (lambda p: p.write_bytes(b"\x08\x07garbage that is not protobuf \xff\xff\xff"), "corrupt or truncated"),
    ],
)
def test_bad_files_give_one_line_errors(tmp_path, make, match):
    p = tmp_path / "bad.onnx"
    make(p)
    with pytest.raises(ModelError, match=match) as e:
        load_model(p)
    assert "\n" not in str(e.value)


def test_truncated_file(tiny_model, tmp_path):
    data = tiny_model.read_bytes()
    p = tmp_path / "trunc.onnx"
    p.write_bytes(data[: len(data) // 2])
    with pytest.raises(ModelError) as e:
        load_model(p)
    assert "\n" not in str(e.value)


def test_missing_and_truncated_external_data(tiny_model, tmp_path):
    save_model(load_model(tiny_model), tmp_path / "m.onnx", external_data=True)
    data = tmp_path / "m.onnx.data"
    data.write_bytes(data.read_bytes()[:10])
    with pytest.raises(ModelError, match="truncated"):
        load_model(tmp_path / "m.onnx")
    data.unlink()
    with pytest.raises(ModelError, match="missing"):
        load_model(tmp_path / "m.onnx")


def test_checker_error_is_one_line(tiny_model, tmp_path):
    m = load_model(tiny_model)
    m.graph.node[0].input[1] = "does_not_exist"
    with pytest.raises(ModelError, match="checker") as e:
        check_model(m)
    assert "\n" not in str(e.value)


def test_failed_save_leaves_nothing(tiny_model, tmp_path):
    m = load_model(tiny_model)
    m.graph.node[0].input[1] = "does_not_exist"
    out = tmp_path / "out"
    with pytest.raises(ModelError):
        save_model(m, out / "m.onnx")
    assert list(out.iterdir()) == []


def test_shape_inference(tiny_model):
    inferred = infer_shapes(load_model(tiny_model))
    names = {vi.name for vi in inferred.graph.value_info}
    assert {"c", "r", "g", "f"} <= names


def _write_external(path: Path, name: str, n: int, value_of_chunk) -> TensorProto:
    """An external float32 tensor written chunk by chunk, so the whole array is never in memory."""
    offset = path.stat().st_size if path.exists() else 0
    chunk = 1 << 24
    with open(path, "ab") as f:
        for start in range(0, n, chunk):
            f.write(value_of_chunk(start, min(chunk, n - start)).astype("<f4").tobytes())
    t = TensorProto(name=name, data_type=TensorProto.FLOAT, dims=[n])
    t.data_location = TensorProto.EXTERNAL
    for k, v in (("location", path.name), ("offset", str(offset)), ("length", str(n * 4))):
        e = t.external_data.add()
        e.key, e.value = k, v
    return t


@pytest.mark.large
def test_model_over_2gb_round_trips(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    n = 190_000_000  # 3 x 760 MB > 2 GB
    data = src / "big.onnx.data"
    pattern = lambda i: (lambda start, k: ((np.arange(start, start + k) % 7) * (i + 1)).astype(np.float32))
    inits = [_write_external(data, f"w{i}", n, pattern(i)) for i in range(3)]
    nodes, prev = [], "x"
    for i in range(3):
        nodes.append(helper.make_node("ReduceMax", [f"w{i}"], [f"s{i}"], keepdims=1))
        nodes.append(helper.make_node("Add", [prev, f"s{i}"], [f"y{i}"]))
        prev = f"y{i}"
    graph = helper.make_graph(nodes, "big", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
                              [helper.make_tensor_value_info(prev, TensorProto.FLOAT, [1])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(src / "big.onnx"))
    assert data.stat().st_size > PROTOBUF_LIMIT

    check_model(src / "big.onnx")  # by path: the checker reads the file, not a 2 GB proto
    loaded = load_model(src / "big.onnx")  # one in-memory copy of the weights
    out = save_model(loaded, tmp_path / "dst" / "big.onnx")  # external data chosen automatically
    del loaded
    assert (tmp_path / "dst" / "big.onnx.data").stat().st_size == 3 * n * 4
    assert out.stat().st_size < 1 << 20

    # the values survived: compare with the source file through memory maps
    a = np.memmap(data, dtype="<f4", mode="r")
    b = np.memmap(tmp_path / "dst" / "big.onnx.data", dtype="<f4", mode="r")
    for start in range(0, a.size, 1 << 26):
        assert np.array_equal(a[start : start + (1 << 26)], b[start : start + (1 << 26)])
    del a, b
    sess = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    y = sess.run(None, {"x": np.zeros(1, np.float32)})[0]
    assert y[0] == 6 * (1 + 2 + 3)  # max of each weight, exact in float32


def test_saving_a_model_whose_weights_are_still_on_disk(tiny_model, tmp_path):
    save_model(load_model(tiny_model), tmp_path / "a" / "m.onnx", external_data=True)
    lazy = load_model(tmp_path / "a" / "m.onnx", load_external_data=False)
    with pytest.raises(ModelError, match="base_dir"):
        save_model(lazy, tmp_path / "b" / "m.onnx", external_data=True)
    out = save_model(lazy, tmp_path / "b" / "m.onnx", external_data=True, base_dir=tmp_path / "a")
    a, b = load_model(tmp_path / "a" / "m.onnx"), load_model(out)
    assert [numpy_helper.to_array(t).tolist() for t in a.graph.initializer] == [numpy_helper.to_array(t).tolist() for t in b.graph.initializer]


def test_artifacts_get_the_mode_of_an_ordinary_write(tiny_model, tmp_path):
    """Temporary files are private (0600); the renamed artifacts must be as readable as any file
    the user writes, for the engine builder or the Jetson that reads them under another account."""
    from trtcompress.fileio import atomic_dir, write_json

    mask = os.umask(0o022)
    try:
        out = save_model(load_model(tiny_model), tmp_path / "m.onnx", external_data=True)
        table = write_json(tmp_path / "calibration.json", {"amax": {}})
        with atomic_dir(tmp_path / "run") as d:
            (d / "x").write_text("x")
    finally:
        os.umask(mask)
    for p in (out, tmp_path / "m.onnx.data", table):
        assert p.stat().st_mode & 0o777 == 0o644, p
    assert (tmp_path / "run").stat().st_mode & 0o777 == 0o755
