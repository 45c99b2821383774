"""A one-sided input (Fashion-MNIST pixels in [0, 1]) is centered before the Conv reading it in the
TensorRT form: the same function, twice the int8 resolution of the input."""
from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from trtcompress import zoo
from trtcompress.model_io import load_model
from trtcompress.quant.trt_rules import trt_qdq_violations
from trtcompress.stages.quantize import QuantizeConfig, quantize


def _run(model: onnx.ModelProto, x: np.ndarray) -> np.ndarray:
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC  # Q/DQ as TensorRT computes it
    return ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]


def _without_qdq(model: onnx.ModelProto) -> onnx.ModelProto:
    """The float graph under the Q/DQ pairs: every DQ output replaced by its Q's input."""
    m = onnx.ModelProto()
    m.CopyFrom(model)
    q_in = {n.output[0]: n.input[0] for n in m.graph.node if n.op_type == "QuantizeLinear"}
    source = {n.output[0]: q_in[n.input[0]] for n in m.graph.node if n.op_type == "DequantizeLinear" and n.input[0] in q_in}
    keep = [n for n in m.graph.node if n.op_type not in ("QuantizeLinear", "DequantizeLinear")]
    for n in keep:
        for i, name in enumerate(n.input):
            n.input[i] = source.get(name, name)
    del m.graph.node[:]
    m.graph.node.extend(keep)
    return m


@pytest.fixture(scope="module")
def cnn(tmp_path_factory):
    d = tmp_path_factory.mktemp("calib")
    x, _ = zoo.fashion_mnist("train", limit=256)
    np.savez(d / "0.npz", x=x)
    model = load_model(zoo.onnx_path("fashion_cnn"))
    run = {c: quantize(model, QuantizeConfig(calib=str(d), center_inputs=c, progress=False)) for c in (True, False)}
    return model, run, zoo.fashion_mnist("test", limit=500)[0], d


def test_the_centered_input_keeps_the_function_borders_included(cnn):
    model, run, x, _ = cnn
    out = run[True].model
    assert [n.op_type for n in out.graph.node[:2]] == ["Sub", "Pad"]  # the first Conv pads: its padding moves before the Q/DQ
    assert not trt_qdq_violations(out)
    np.testing.assert_allclose(_run(_without_qdq(out), x), _run(model, x), rtol=1e-4, atol=1e-4)


def test_centering_doubles_the_input_resolution_and_lowers_the_error(cnn):
    model, run, x, _ = cnn
    (row,) = run[True].report["centered_inputs"]
    assert row["tensor"] == "x" and row["range"] == [0.0, 1.0] and row["center"] == 0.5 and row["gain_db"] == pytest.approx(6.02, abs=0.01)
    assert "centered_inputs" not in run[False].report
    ref = _run(model, x)
    err = {c: float(np.sum((_run(r.model, x) - ref) ** 2)) for c, r in run.items()}
    assert err[True] < err[False]  # the whole model: the other layers' error dominates (3-4% less, 2026-12-03)
    # the input's own share: with only the Conv reading it quantized, twice the resolution halves
    # the error (measured 0.50x, 2026-12-03)
    _, _, _, calib = cnn
    first = next(n.name for n in model.graph.node if n.op_type == "Conv")
    alone = {c: quantize(model, QuantizeConfig(calib=str(calib), center_inputs=c, include=(first,), progress=False)).model for c in (True, False)}
    err = {c: float(np.sum((_run(m, x) - ref) ** 2)) for c, m in alone.items()}
    assert err[True] < 0.6 * err[False]


def test_a_symmetric_input_and_the_cpu_form_are_left_alone(cnn, tmp_path):
    model, _, _, calib = cnn
    x, _ = zoo.fashion_mnist("train", limit=256)
    np.savez(tmp_path / "0.npz", x=2 * x - 1)  # [-1, 1]: nothing to gain
    assert "centered_inputs" not in quantize(model, QuantizeConfig(calib=str(tmp_path), progress=False)).report
    cpu = quantize(model, QuantizeConfig(calib=str(calib), target="cpu", progress=False))
    assert "centered_inputs" not in cpu.report and not any(n.op_type == "Sub" for n in cpu.model.graph.node)


def test_a_saved_table_follows_the_switch_of_the_run_that_reads_it(cnn, tmp_path):
    model, run, _, _ = cnn
    saved = tmp_path / "calib.json"
    saved.write_text(run[True].artifacts["calibration.json"])
    subs = {c: sum(n.op_type == "Sub" for n in quantize(model, QuantizeConfig(table=str(saved), center_inputs=c, sensitivity_samples=0)).model.graph.node)
            for c in (True, False)}
    assert subs == {True: 1, False: 0}


def _dead(model: onnx.ModelProto) -> list[str]:
    used = {i for n in model.graph.node for i in n.input} | {o.name for o in model.graph.output}
    return [t.name for t in model.graph.initializer if t.name not in used]


@pytest.mark.parametrize("target, weights", [("tensorrt", "float"), ("tensorrt", "int8"), ("cpu", "float")])
def test_the_replaced_bias_does_not_ship_without_the_cleanup(cnn, tmp_path, target, weights):
    """The stage alone (no normalize, no cleanup after it, as the Python API runs it) ships no
    dead initializer: the first Conv's bias that centering replaces goes in both weight formats,
    and the CPU form (which does not center) ships none either."""
    model, run, _, _ = cnn
    saved = tmp_path / "calib.json"
    saved.write_text(run[True].artifacts["calibration.json"])
    out = quantize(model, QuantizeConfig(table=str(saved), target=target, weights=weights, sensitivity_samples=0)).model
    assert _dead(out) == []
    if target == "tensorrt":
        conv = next(n for n in model.graph.node if n.op_type == "Conv")
        assert len(conv.input) == 3 and any(n.op_type == "Sub" for n in out.graph.node)
        assert conv.input[2] not in {t.name for t in out.graph.initializer}
        assert next(n for n in out.graph.node if n.name == conv.name).input[2].endswith("_bias")
