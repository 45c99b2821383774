"""The batch axis is found per input: silero-vad's recurrent state [2, batch, 128] and its scalar
sample rate, on the ONNX files the silero-vad package ships."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from trtcompress.cli.main import main
from trtcompress.data import ListSource, ModelInput, model_inputs, open_source, rebatch
from trtcompress.data.base import batch_axes, batch_size_of
from trtcompress.data.readers import ReaderOptions
from trtcompress.errors import DataError

silero = pytest.importorskip("silero_vad")
VAD_DIR = Path(silero.__file__).parent / "data"
VAD = VAD_DIR / "silero_vad.onnx"  # layers inside an If on the sample rate, dims unnamed
VAD15 = VAD_DIR / "silero_vad_16k_op15.onnx"  # no control flow around the convolutions, dims named


def _cli(capsys, *args: str, code: int = 0) -> str:
    """Run a verb in this process (a fresh interpreter per call costs seconds on a loaded machine)."""
    got = main(list(args))
    out = capsys.readouterr()
    assert got == code, out.err
    return out.out


def test_axes_from_shared_names_unnamed_dims_and_scalars():
    # the name most inputs share is the batch, wherever it sits
    assert batch_axes([("batch", "sequence"), (2, "batch", 128), ()]) == [0, 1, None]
    # unnamed dynamic dims (silero_vad.onnx): the first dynamic one
    assert batch_axes([(None, None), (2, None, 128), ()]) == [0, 1, None]
    # a fixed batch of 1 with a dynamic sequence: the sequence is never the batch
    assert batch_axes([(1, "sequence_length")]) == [0]
    # static model: axis 0 (a fixed batch); a static input beside a named batch has none
    assert batch_axes([(1, 3, 8, 8)]) == [0]
    assert batch_axes([("N", 3, 8, 8), (4,)]) == [0, None]
    # outputs break a tie between names each used by one input
    assert batch_axes([("a", 5), (6, "b")], outputs=[("b", 1)]) == [None, 1]


@pytest.mark.parametrize("path", [VAD, VAD15], ids=["if", "op15"])
def test_vad_inputs(path):
    by = {i.name: i for i in model_inputs(path)}
    assert by["input"].batch_axis == 0 and by["state"].batch_axis == 1 and by["sr"].batch_axis is None


def test_rebatch_joins_state_on_its_batch_axis_and_matches_per_sample_runs():
    """Samples stored one by one ([1, 512], [2, 1, 128], sr) are joined into one batch along each
    input's own axis; the VAD gives every sample the result it gives it alone."""
    inputs = model_inputs(VAD)
    rng = np.random.default_rng(0)
    samples = [{"input": rng.standard_normal((1, 512), dtype=np.float32) * 0.1, "state": rng.standard_normal((2, 1, 128), dtype=np.float32) * 0.1,
                "sr": np.array(16000, np.int64)} for _ in range(5)]
    (batch, rest) = list(rebatch(ListSource(samples), 4, inputs=inputs))
    assert batch["input"].shape == (4, 512) and batch["state"].shape == (2, 4, 128) and batch["sr"].shape == ()
    assert batch_size_of(batch, inputs) == 4 and batch_size_of(rest, inputs) == 1
    sess = ort.InferenceSession(str(VAD), providers=["CPUExecutionProvider"])
    out, state = sess.run(None, batch)
    for k, s in enumerate(samples[:4]):
        o1, s1 = sess.run(None, s)
        np.testing.assert_allclose(out[k], o1[0], rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(state[:, k], s1[:, 0], rtol=1e-4, atol=1e-5)
    # an input without a batch may not differ between the samples joined
    samples[1]["sr"] = np.array(8000, np.int64)
    with pytest.raises(DataError, match="'sr' has no batch axis"):
        list(rebatch(ListSource(samples), 4, inputs=inputs))


def test_random_data_puts_the_batch_on_each_axis_and_a_spec_can_move_it():
    inputs = model_inputs(VAD)
    (feed,) = list(open_source("random:1", inputs, ReaderOptions(batch_size=3, shapes={"input": (1, 512)})))
    assert feed["input"].shape == (3, 512) and feed["state"].shape == (2, 3, 128)
    assert feed["sr"].shape == () and int(feed["sr"]) == 16000  # the value the graph compares it with
    # a sequence-first input [time, batch]: --input x:5xN names axis 1
    seq_first = [ModelInput("x", (None, None), np.dtype(np.float32))]
    (f,) = list(open_source("random:1", seq_first, ReaderOptions(batch_size=3, shapes={"x": (5, 1)}, batch_axes={"x": 1})))
    assert f["x"].shape == (5, 3)


def test_vad_compare_and_bench_cli(tmp_path, capsys):
    out = _cli(capsys, "compare", str(VAD), str(VAD15), "--input", "input:1x512", "--batch", "3", "--data", "random:2", "--json")
    result = json.loads(out)
    # the 16 kHz branch of the If model is the op15 model: same outputs, batch of 3 on the state's axis 1
    assert result["samples"] == 6 and result["outputs"]["output"]["cosine_min"] > 0.9999
    npz = tmp_path / "vad.npz"
    rng = np.random.default_rng(1)
    np.savez(npz, input=rng.standard_normal((2, 512), dtype=np.float32), state=np.zeros((2, 2, 128), np.float32), sr=np.array(16000))
    # two stored samples fill batch 4 by repetition, along each input's own axis
    bench = _cli(capsys, "bench", str(VAD15), "--data", str(npz), "--batch-sizes", "4", "--iterations", "3", "--warmup", "1", "--rounds", "1", "--json")
    assert json.loads(bench)["results"]["4"][str(VAD15)]["iterations"] == 3


def test_vad_quantize_cpu_keeps_weights_read_inside_branches(tmp_path, capsys):
    """The op15 export reads its LSTM weights from inside an If: quantize keeps them (it used to
    drop them as unused, and ONNX Runtime refused the model), and the result follows FP32."""
    out = tmp_path / "vad_int8.onnx"
    _cli(capsys, "quantize", str(VAD15), "-o", str(out), "--target", "cpu", "--calib", "random:4", "--input", "input:1x512")
    onnx.checker.check_model(str(out))
    cmp = _cli(capsys, "compare", str(VAD15), str(out), "--input", "input:1x512", "--batch", "2", "--json", "--data", "random:3", "--seed", "7", "--outputs", "output")
    assert json.loads(cmp)["outputs"]["output"]["cosine_min"] > 0.99


def test_a_named_dimension_in_input_marks_the_batch_axis():
    from trtcompress.specs import parse_input_specs, spec_batch_axes

    specs = parse_input_specs(["state:2xNx128", "x:1x512"])
    assert spec_batch_axes(specs) == {"state": 1}
    assert specs[0].concrete_shape() == (2, 1, 128) and specs[0].concrete_shape(4) == (2, 4, 128)
    with pytest.raises(Exception, match="give numbers for all but the batch"):
        parse_input_specs(["y:NxT"])[0].concrete_shape()


def test_unknown_dimension_placeholders_are_not_names():
    """paddle2onnx writes "?" for every unknown dimension and ONNX shape inference "unk__N": they
    are not one shared symbol (PP-OCR's classifier [None, 3, ?, ?] was batched along its height)."""
    from trtcompress.data.base import batch_axes

    assert batch_axes([(None, 3, "?", "?")], [(None, 2)]) == [0]
    assert batch_axes([("unk__1", 3, "unk__2")]) == [0]
    assert batch_axes([(2, "batch", 128), ("batch", 512)]) == [1, 0]
