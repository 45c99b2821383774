"""One reader-options builder: the same --input/--batch/--seed/--preprocess give the same data in
compare, bench, quantize and compress, because each goes through DataOptions and open_data."""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

import trtcompress
from trtcompress.benchmark import BenchConfig, _feed
from trtcompress.cli.common import data_options
from trtcompress.cli.main import build_parser
from trtcompress.data import model_inputs
from trtcompress.data.options import DataOptions, open_data
from trtcompress.errors import ConfigError
from trtcompress.job import CompressConfig, _data_factory
from trtcompress.stages.quantize import QuantizeConfig, _source
from trtcompress.torch_export import ExportConfig

SPEC = "x:5xNx8"  # sequence first: the named dimension is the batch axis


@pytest.fixture
def seq_model(tmp_path) -> Path:
    """x [T, N, 8] -> y: both leading dimensions dynamic, so only --input tells the shapes and batch axis."""
    g = helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "seq",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["T", "N", 8])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["T", "N", 8])])
    path = tmp_path / "seq.onnx"
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    return path


def _parse(*argv: str):
    return build_parser(argv[0]).parse_args(list(argv))


def test_same_options_same_feeds_in_every_verb(seq_model, tmp_path):
    inputs = model_inputs(seq_model)
    want = list(open_data("random:2", inputs, DataOptions(batch=3, seed=4, inputs=(SPEC,))))
    assert [f["x"].shape for f in want] == [(5, 3, 8), (5, 3, 8)]

    compare = data_options(_parse("compare", "a.onnx", "b.onnx", "--input", SPEC, "--batch", "3", "--seed", "4"))
    quantize = _source(onnx.load(str(seq_model)), "random:2", QuantizeConfig(inputs=(SPEC,), batch=3), None)
    job = CompressConfig(model=str(seq_model), export=ExportConfig(inputs=(SPEC,)), batch=3, data="random:2")
    got = {
        "compare": list(open_data("random:2", inputs, compare)),
        "quantize": list(quantize),
        "compress": list(_data_factory(job)(inputs)),
    }
    for verb, feeds in got.items():
        seed = 4 if verb == "compare" else 0  # only compare's --seed was given
        ref = want if seed == 4 else list(open_data("random:2", inputs, DataOptions(batch=3, inputs=(SPEC,))))
        assert len(feeds) == 2, verb
        for f, r in zip(feeds, ref):
            np.testing.assert_array_equal(f["x"], r["x"], err_msg=verb)
    # bench: the first feed of the random data, its batch on the axis --input named
    bench = BenchConfig(inputs=(SPEC,), seed=4)
    np.testing.assert_array_equal(_feed(seq_model, 3, bench)["x"], list(open_data("random:1", inputs, DataOptions(batch=3, seed=4, inputs=(SPEC,))))[0]["x"])


def test_bench_and_compress_flags_build_the_same_options(seq_model):
    from trtcompress.cli.compress import build_config

    bench = _parse("bench", str(seq_model), "--input", SPEC, "--seed", "2")
    from trtcompress.cli.common import config_from_args

    assert config_from_args(bench, BenchConfig).data_options(3) == DataOptions(batch=3, seed=2, inputs=(SPEC,))
    job = build_config(_parse("compress", str(seq_model), "--input", SPEC, "--batch", "3", "--limit", "6"))
    assert job.data_options() == DataOptions(batch=3, limit=6, inputs=(SPEC,))
    assert job.bench.data_options(3).inputs == (SPEC,)


@pytest.mark.parametrize("make", [
    lambda: DataOptions(inputs=("x:1x3:int99",)),
    lambda: BenchConfig(inputs=("x:1x3:int99",)),
    lambda: QuantizeConfig(inputs=("x:1x3:int99",)),
    lambda: DataOptions(preprocess="resize=abc"),
    lambda: BenchConfig(preprocess="resize=abc"),
])
def test_a_bad_option_is_refused_when_the_options_are_built(make):
    with pytest.raises(ConfigError):
        make()


def test_reader_options_are_built_in_one_place():
    """ReaderOptions (the parsed form) come from DataOptions (readers.py: its default); the exceptions build internal random
    check data (export) or are lowrank's own, left for the graph work."""
    package = Path(trtcompress.__file__).parent
    builds = {str(p.relative_to(package)) for p in package.rglob("*.py") if re.search(r"\bReaderOptions\(", p.read_text())}
    assert builds <= {"data/options.py", "data/readers.py", "torch_export/exporter.py", "lowrank/onnx_factorize.py"}
