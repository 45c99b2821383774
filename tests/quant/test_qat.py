"""Quantization-aware training (quant.qat) on the real Fashion CNN: the fake quantization computes
what ONNX Runtime computes on the written Q/DQ model, the written forms ship exactly the trained
grid (weights, weight scales, learned activation scales), and an interrupted run resumes to the
same weights."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

torch = pytest.importorskip("torch")

from trtcompress import zoo  # noqa: E402
from trtcompress.model_io import infer_shapes, load_model  # noqa: E402
from trtcompress.quant._ir import as_ir, name_main_nodes  # noqa: E402
from trtcompress.quant.calibrate import CollectConfig, calibrate  # noqa: E402
from trtcompress.quant.centering import center_inputs  # noqa: E402
from trtcompress.quant.placement import plan_quantization  # noqa: E402
from trtcompress.quant.qat import QatOptions, quantization_aware  # noqa: E402
from trtcompress.quant.qat.data import training_data  # noqa: E402
from trtcompress.quant.qdq_trt import write_trt_qdq  # noqa: E402
from trtcompress.sessions import SessionConfig, open_session  # noqa: E402
from trtcompress.stages.normalize import NormalizeConfig, normalize  # noqa: E402

STEPS = 12


def _calibrated(d, name):
    x, _ = zoo.fashion_mnist("train", limit=256)
    np.savez(d / "0.npz", x=x)
    work = infer_shapes(normalize(load_model(zoo.onnx_path(name)), NormalizeConfig()).model)
    graph = as_ir(work)
    name_main_nodes(graph, work)
    plan = plan_quantization(graph)
    table = calibrate(work, plan.activation_tensors, [{"x": x[i : i + 64]} for i in range(0, 256, 64)], method="entropy", config=CollectConfig(progress=False))
    table, rows = center_inputs(graph, plan, table)
    return work, plan, table, str(d), rows


@pytest.fixture(scope="module")
def calibrated(tmp_path_factory):
    work, plan, table, d, rows = _calibrated(tmp_path_factory.mktemp("calib"), "fashion_cnn")
    assert rows  # the [0, 1] input is centered: the fake quantization must follow that path too
    return work, plan, table, d


def _train(calibrated, steps=STEPS, checkpoint=None, weight_steps=None):
    from trtcompress.data.options import DataOptions

    work, plan, table, d = calibrated
    data = training_data(work, [d], 32, DataOptions(), augment=True)
    return quantization_aware(work, plan, table, work, data.batches, data.labelled, data.digest,
                              QatOptions(steps=steps, lr=1e-4, batch=32, threads=1, progress=False, checkpoint=checkpoint), weight_steps)


@pytest.fixture(scope="module")
def trained(calibrated):
    return _train(calibrated)


def _outputs(model: onnx.ModelProto, x: np.ndarray, names: list[str]) -> dict[str, np.ndarray]:
    # no graph optimisation: the Q/DQ arithmetic as written (the basic level also quantizes biases to int32)
    session = open_session(model, SessionConfig(optimization="disable", threads=1), outputs=[n for n in names if n != "logits"])
    return dict(zip(names, session.run(names, {"x": x})))


def _captured(student, x: np.ndarray) -> dict[str, np.ndarray]:
    cap: dict[str, np.ndarray] = {}
    inner = student.replay.after

    def after(step, outs):
        outs = inner(step, outs)
        cap.update((n, o.detach().numpy()) for n, o in zip(step.outputs, outs))
        return outs

    student.replay.after = after
    try:
        with torch.no_grad():
            student.eval()(torch.from_numpy(x))
    finally:
        student.replay.after = inner
    return cap


def test_fake_quant_rounds_and_saturates_as_quantize_linear():
    """Half steps (round half to even), the int8 bounds [-128, 127] and zero point 0, against
    ONNX Runtime's QuantizeLinear/DequantizeLinear on the same values."""
    from trtcompress.quant.qat.fake_quant import fake_quant

    s = np.float32(0.0375)
    x = np.concatenate([(np.arange(-140, 140) + 0.5) * s, np.arange(-140, 140) * s,
                        np.random.default_rng(0).normal(0, 2, 4000)]).astype(np.float32)
    h = onnx.helper
    g = h.make_graph([h.make_node("QuantizeLinear", ["x", "s", "z"], ["q"]), h.make_node("DequantizeLinear", ["q", "s", "z"], ["y"])], "qdq",
                     [h.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [None])], [h.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [None])],
                     [numpy_helper.from_array(np.array(s), "s"), numpy_helper.from_array(np.array(0, np.int8), "z")])
    expect = open_session(h.make_model(g, opset_imports=[h.make_opsetid("", 19)]), SessionConfig(optimization="disable")).run(None, {"x": x})[0]
    np.testing.assert_array_equal(fake_quant(torch.from_numpy(x), torch.tensor(s)).numpy(), expect)


def test_fake_quantization_computes_what_onnx_runtime_computes_on_the_written_model(calibrated, trained):
    work, plan, _, _ = calibrated
    x, _ = zoo.fashion_mnist("test", limit=500)
    qdq = write_trt_qdq(trained.model, plan, trained.table)
    layers = [n.output[0] for n in work.graph.node]
    codes = [n.output[0] for n in qdq.graph.node if n.op_type == "QuantizeLinear" and not n.input[0].endswith("weight")]
    ort_out = _outputs(qdq, x, layers + codes)
    ours = _captured(trained.student, x)
    first = layers[0]  # the centered input's Conv: no rounding upstream, so equal to float rounding
    np.testing.assert_allclose(ours[first], ort_out[first], rtol=0, atol=1e-5)
    # later layers: a value within float rounding of a half step may round the other way (a
    # different summation order); they must not differ more than that
    for q in codes:
        node = next(n for n in qdq.graph.node if n.output[0] == q)
        scale = numpy_helper.to_array(next(t for t in qdq.graph.initializer if t.name == node.input[1]))
        mine = np.clip(np.round(_reference_input(node, qdq, ours, x) / scale), -128, 127)
        same = (mine == ort_out[q]).mean()
        assert same >= 0.995 and np.abs(mine - ort_out[q]).max() <= 1, (q, same)
    fp32 = _outputs(work, x, ["logits"])["logits"]
    logits = ours["logits"]
    assert np.abs(logits - ort_out["logits"]).max() < 0.25 * np.abs(ort_out["logits"] - fp32).max()
    assert (logits.argmax(1) == ort_out["logits"].argmax(1)).mean() >= 0.995


def _reference_input(node, qdq, ours, x):
    """What our replay fed the Q node: the float tensor it quantizes (the graph input's centered
    form is computed here as the writer does: x - c, padded with -c)."""
    name = node.input[0]
    if name in ours:
        return ours[name]
    return _outputs(qdq, x, [name])[name]


def test_the_written_forms_ship_exactly_the_trained_grid(calibrated, trained):
    work, plan, table, _ = calibrated
    student = trained.student
    out = write_trt_qdq(trained.model, plan, trained.table, weights="int8")
    inits = {t.name: numpy_helper.to_array(t) for t in out.graph.initializer}
    by_node = {n.name: n for n in out.graph.node}
    _captured(student, zoo.fashion_mnist("test", limit=8)[0])  # the weight scales of a forward pass
    scales = student.weight_scales()
    assert scales and len(scales) == len(plan.weights)
    for w in plan.weights:
        dq = by_node[f"{w.tensor}_DequantizeLinear"]
        q, s = inits[dq.input[0]], inits[dq.input[1]]
        trained_w = student.replay.param(w.tensor).detach()
        mine = scales[(w.node, w.index)]
        np.testing.assert_array_equal(s, mine)  # bit for bit
        expect = torch.round(trained_w / torch.from_numpy(mine).reshape([-1] + [1] * (trained_w.ndim - 1) if w.axis == 0 else mine.shape)).clamp(-127, 127)
        np.testing.assert_array_equal(q, expect.numpy().astype(np.int8))
    learned = 0
    for t in plan.qdq_tensors:
        if f"{t}_scale" in inits:
            assert inits[f"{t}_scale"] == np.float32(student.scale(t).detach()), t
            learned += inits[f"{t}_scale"] != np.float32(table.amax[t] / 127.0)
    assert learned >= 3  # the scales moved from the calibrated ones and shipped as trained
    assert trained.report["weights_changed"] == trained.report["weights_trained"] > 0
    # the float form holds the trained float weights themselves (TensorRT quantizes them with the same scales)
    floats = {t.name: numpy_helper.to_array(t) for t in write_trt_qdq(trained.model, plan, trained.table).graph.initializer}
    for w in plan.weights:
        np.testing.assert_array_equal(floats[w.tensor], student.replay.param(w.tensor).detach().numpy())


def test_the_cpu_form_ships_the_weight_grid_trained_for_it(tmp_path):
    """Trained for the CPU form (its weight grids: int7 layers, which read hardswish's signed
    outputs, at twice the step), its integer layers' weights are exactly the trained integers on
    the trained scales."""
    from trtcompress.quant.lower_cpu import lower_cpu
    from trtcompress.quant.ptq import PtqOptions, weight_grids

    calibrated = _calibrated(tmp_path, "fashion_mbv3")[:4]
    work, plan, _, _ = calibrated
    steps = {n: g.step for n, g in weight_grids(as_ir(work), plan, PtqOptions(target="cpu", cpu_weights="int7")).items()}
    assert sorted(set(steps.values())) == [1.0, 2.0]
    result = _train(calibrated, steps=3, weight_steps=steps)
    lowered = lower_cpu(result.model, plan, result.table, weights="int7")
    assert lowered.layer_weights and set(lowered.layer_weights) == set(steps)
    inits = {t.name: numpy_helper.to_array(t) for t in lowered.model.graph.initializer}
    _captured(result.student, zoo.fashion_mnist("test", limit=8)[0])
    scales = result.student.weight_scales()
    spec = {w.node: w for w in plan.weights if w.index == 1}
    for node, mode in lowered.layer_weights.items():
        q, s = inits[f"{node}__w1_q"].astype(np.int32), inits[f"{node}__w1_scale"]
        np.testing.assert_array_equal(s, scales[(node, 1)])
        w = result.student.replay.param(spec[node].tensor).detach()
        shape = [1] * w.ndim
        shape[spec[node].axis] = -1
        expect = torch.round(w / torch.from_numpy(s.copy()).reshape(shape)).clamp(-127, 127).numpy().astype(np.int32)
        q = q - 128 if mode == "uint8" else q
        np.testing.assert_array_equal(q if q.shape == expect.shape else q.T, expect)


def test_an_interrupted_run_resumes_to_the_same_weights(calibrated, trained, tmp_path, monkeypatch):
    from trtcompress.finetune import trainer

    real = trainer.distillation_loss
    calls = {"n": 0}

    def dies_at_step_8(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 8:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(trainer, "distillation_loss", dies_at_step_8)
    with pytest.raises(KeyboardInterrupt):
        _train(calibrated, checkpoint=str(tmp_path))
    monkeypatch.setattr(trainer, "distillation_loss", real)
    resumed = _train(calibrated, checkpoint=str(tmp_path))
    assert resumed.report["resumed_at_step"] == 7  # a checkpoint every step of 12 (steps // 10)
    for name, value in trained.student.replay.trained().items():
        np.testing.assert_array_equal(resumed.student.replay.trained()[name], value)
    assert resumed.table.amax == trained.table.amax


def test_quantize_qat_through_compress_with_labels_and_checkpoints(tmp_path):
    """``quantize`` with ``qat`` as a compress stage: trained with labels (a built-in dataset), its
    checkpoints kept beside the stage cache, the TensorRT form still valid for TensorRT."""
    from trtcompress.job import CompressConfig, compress
    from trtcompress.quant.trt_rules import trt_qdq_violations
    from trtcompress.stages.quantize import QuantizeConfig

    d = tmp_path / "calib"
    d.mkdir()
    np.savez(d / "0.npz", x=zoo.fashion_mnist("train", limit=128)[0])
    stage = QuantizeConfig(qat=True, qat_steps=4, qat_batch=32, qat_lr=1e-4, qat_data=("fashion-mnist:train:256",), threads=1, sensitivity_samples=0, progress=False)
    result = compress(CompressConfig(model=str(zoo.onnx_path("fashion_cnn")), runs_dir=str(tmp_path / "runs"), name="qat", stages=(stage,),
                                     data=str(d), calib_from_data="same", skip_bench=True))
    (record,) = [s for s in result.report["stages"] if s["name"] == "quantize"]
    qat = record["report"]["qat"]
    assert qat["labelled"] and qat["alpha"] == 0.5 and qat["steps"] == 4 and qat["samples"] == 256
    assert Path(qat["checkpoint"]).parent == tmp_path / "runs" / ".cache" / "qat-checkpoints"
    assert (Path(qat["checkpoint"]) / "last.pt").is_file()
    assert not trt_qdq_violations(load_model(result.model_path))


def test_bad_qat_settings_are_one_line_errors():
    from trtcompress.errors import ConfigError, ModelError
    from trtcompress.quant.qat.replay import GraphReplay
    from trtcompress.stages.quantize import QuantizeConfig

    with pytest.raises(ConfigError, match="qat lr must be > 0"):
        QuantizeConfig(calib="x", qat=True, qat_lr=0.0)
    h = onnx.helper
    g = h.make_graph([h.make_node("Resize", ["x", "", "s"], ["y"])], "g", [h.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1, 1, 2, 2])],
                     [h.make_tensor_value_info("y", onnx.TensorProto.FLOAT, None)], [numpy_helper.from_array(np.ones(4, np.float32), "s")])
    with pytest.raises(ModelError, match="no rule for Resize"):
        GraphReplay(h.make_model(g))
