"""Integer inputs get valid values: indices within their Gather table, a BERT-style encoder's
token types within its token-type rows, attention masks as ones then padding."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from trtcompress.cli.main import main
from trtcompress.data import model_inputs, open_source
from trtcompress.data.readers import ReaderOptions


def _cli(capsys, *args: str, code: int = 0) -> str:
    """Run a verb in this process (a fresh interpreter per call costs seconds on a loaded machine)."""
    got = main(list(args))
    out = capsys.readouterr()
    assert got == code, out.err
    return out.out


def _gather_model(path: Path, rows: int = 7) -> Path:
    """ids [N, 4] -> Cast -> Unsqueeze -> Gather on a [rows, 3] table: indices must stay below ``rows``."""
    table = np.arange(rows * 3, dtype=np.float32).reshape(rows, 3)
    nodes = [
        helper.make_node("Cast", ["ids"], ["ids32"], to=TensorProto.INT32),
        helper.make_node("Unsqueeze", ["ids32", "axes"], ["ids_u"]),
        helper.make_node("Gather", ["table", "ids_u"], ["emb"], axis=0),
        helper.make_node("ReduceSum", ["emb", "axes"], ["y"], keepdims=0),
    ]
    graph = helper.make_graph(
        nodes, "gather",
        [helper.make_tensor_value_info("ids", TensorProto.INT64, ["N", 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 4, 3])],
        [numpy_helper.from_array(table, "table"), numpy_helper.from_array(np.array([1], np.int64), "axes")],
    )
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
    return path


def test_gather_indices_stay_within_the_table(tmp_path, capsys):
    path = _gather_model(tmp_path / "gather.onnx")
    (ids,) = model_inputs(path)
    assert (ids.values.low, ids.values.high) == (0, 7) and "Gather" in ids.values.why
    feeds = list(open_source("random:4", [ids], ReaderOptions(batch_size=8)))
    drawn = np.concatenate([f["ids"] for f in feeds])
    assert drawn.min() >= 0 and drawn.max() == 6  # the whole table is used, never past it
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    for f in feeds:
        sess.run(None, f)
    # compare's and bench's default data run where 0-9 ended in an out-of-range Gather
    _cli(capsys, "compare", str(path), str(path))
    _cli(capsys, "bench", str(path), "--iterations", "3", "--rounds", "1", "--warmup", "1")


@pytest.fixture(scope="session")
def bert_onnx(tmp_path_factory) -> Path:
    """A BERT-style encoder from a small config with random weights, exported once per session by
    the TorchScript exporter (what many codebases still run)."""
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    cfg = transformers.BertConfig(vocab_size=100, hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64, max_position_embeddings=64)
    torch.manual_seed(0)
    bert = transformers.BertModel(cfg).eval()

    class Encoder(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.bert = bert

        def forward(self, input_ids, attention_mask, token_type_ids):
            return self.bert(input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids).last_hidden_state

    from trtcompress.torch_export import ExportConfig, export_module

    # through trtcompress's own export: integer example inputs must index a 2-row token-type table,
    # and the sequence is one dynamic dimension shared by the three inputs
    path = tmp_path_factory.mktemp("bert") / "bert.onnx"
    names = ["input_ids", "attention_mask", "token_type_ids"]
    config = ExportConfig(inputs=tuple(f"{n}:1x16:int64" for n in names), dynamic=tuple(f"{n}:1=sequence" for n in names), exporter="torchscript", opset=17)
    result = export_module(Encoder(), path, config)
    assert result.check["random_resized"]["max_abs"] < 1e-4  # checked at sequence 32 too
    return path


BERT_SHAPES = ["--input", "input_ids:1x16:int64", "--input", "attention_mask:1x16:int64", "--input", "token_type_ids:1x16:int64"]


@pytest.mark.torch
def test_bert_inputs_get_their_ranges(bert_onnx):
    by = {i.name: i for i in model_inputs(bert_onnx)}
    assert (by["input_ids"].values.low, by["input_ids"].values.high) == (0, 100)
    assert (by["token_type_ids"].values.low, by["token_type_ids"].values.high) == (0, 2)  # token-type rows
    assert by["attention_mask"].values.mask
    (feed,) = list(open_source("random:1", list(by.values()), ReaderOptions(batch_size=64, shapes={n: (1, 16) for n in by})))
    assert feed["token_type_ids"].max() == 1 and feed["input_ids"].max() > 50
    mask = feed["attention_mask"]
    assert mask[:, 0].all() and (np.diff(mask, axis=1) <= 0).all() and not mask.all()  # ones, then padding


@pytest.mark.torch
def test_bert_bench_and_compare_run_on_default_data(bert_onnx, tmp_path, capsys):
    # both used to end in an ONNX Runtime traceback: token_type_ids drawn from 0-9 index 2 rows
    cmp = _cli(capsys, "compare", str(bert_onnx), str(bert_onnx), *BERT_SHAPES, "--json")
    assert json.loads(cmp)["samples"] == 4
    _cli(capsys, "bench", str(bert_onnx), *BERT_SHAPES, "--batch-sizes", "1,2", "--iterations", "3", "--rounds", "1", "--warmup", "1")
    # the user's own token ids through --data, repeated up to the batch
    npz = tmp_path / "tokens.npz"
    np.savez(npz, input_ids=np.array([[5, 7, 9, 0]]), attention_mask=np.array([[1, 1, 1, 0]]), token_type_ids=np.array([[0, 0, 1, 1]]))
    _cli(capsys, "bench", str(bert_onnx), "--data", str(npz), "--batch-sizes", "3", "--iterations", "3", "--rounds", "1", "--warmup", "1")
