"""Readers for Python code and torch DataLoaders: feeds checked against the model, errors name the sample."""
from __future__ import annotations

import textwrap

import numpy as np
import pytest
from calib_graphs import TENSORS, batches

from trtcompress.data import ListSource, from_dataloader, model_inputs, open_source
from trtcompress.data.readers import ReaderOptions
from trtcompress.errors import DataError
from trtcompress.quant.calibrate import CollectConfig, collect_statistics

QUIET = CollectConfig(progress=False)


def write_feeds(tmp_path, body: str):
    f = tmp_path / "feeds.py"
    f.write_text(textwrap.dedent(body))
    return f


def test_module_file_reader(tmp_path, small_model, samples):
    np.save(tmp_path / "x.npy", samples)
    f = write_feeds(
        tmp_path,
        f"""
        import numpy as np
        def feeds():
            x = np.load({str(tmp_path / 'x.npy')!r})
            for i in range(len(x)):
                yield {{"x": x[i]}}          # no batch dimension: the reader adds it
        def pairs():
            x = np.load({str(tmp_path / 'x.npy')!r})
            return [(x[i:i + 4], i) for i in range(0, len(x), 4)]   # (input, label)
        """,
    )
    inputs = model_inputs(small_model)
    src = open_source(f"module:{f}:feeds", inputs)
    feeds = list(src)
    assert len(feeds) == len(samples) and feeds[0]["x"].shape == (1, 3, 8, 8)
    assert len(open_source(f"{f}:feeds", inputs, ReaderOptions(batch_size=5))) == 5  # bare spec, rebatched
    assert len(open_source(f"module:{f}:feeds", inputs, ReaderOptions(limit=3))) == 3
    whole = collect_statistics(small_model, TENSORS, ListSource(batches(samples, 6)), QUIET)
    assert collect_statistics(small_model, TENSORS, src, QUIET) == whole
    assert collect_statistics(small_model, TENSORS, open_source(f"module:{f}:pairs", inputs), QUIET) == whole


def test_pymodule_reader(tmp_path, monkeypatch, small_model):
    pkg = tmp_path / "mycalib"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "data.py").write_text("import numpy as np\nFEEDS = [{'x': np.ones((2, 3, 8, 8), np.float32)}]\ndef feeds():\n    return FEEDS\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    inputs = model_inputs(small_model)
    assert len(list(open_source("pymodule:mycalib.data:feeds", inputs))) == 1
    assert len(list(open_source("pymodule:mycalib.data:FEEDS", inputs))) == 1
    with pytest.raises(DataError, match="has no attribute 'nope'.*feeds"):
        open_source("pymodule:mycalib.data:nope", inputs)
    with pytest.raises(DataError, match="cannot import"):
        open_source("pymodule:not_a_module_here:feeds", inputs)


def test_module_reader_errors_name_the_sample(tmp_path, small_model):
    f = write_feeds(
        tmp_path,
        """
        import numpy as np
        def nan():
            yield {"x": np.zeros((1, 3, 8, 8), np.float32)}
            bad = np.zeros((1, 3, 8, 8), np.float32); bad[0, 0, 0, 0] = np.inf
            yield {"x": bad}
        def wrong_shape():
            yield {"x": np.zeros((1, 3, 9, 8), np.float32)}
        def wrong_name():
            yield {"image": np.zeros((1, 3, 8, 8), np.float32)}
        def needs_args(n):
            return []
        def broken():
            raise RuntimeError("disk gone")
        """,
    )
    inputs = model_inputs(small_model)
    with pytest.raises(DataError, match="sample 1: input 'x' contains Inf"):
        list(open_source(f"module:{f}:nan", inputs))
    with pytest.raises(DataError, match="sample 0: input 'x' has shape"):
        list(open_source(f"module:{f}:wrong_shape", inputs))
    with pytest.raises(DataError, match="missing input"):
        list(open_source(f"module:{f}:wrong_name", inputs))
    with pytest.raises(DataError, match="without arguments"):
        open_source(f"module:{f}:needs_args", inputs)
    with pytest.raises(DataError, match="disk gone"):
        list(open_source(f"module:{f}:broken", inputs))
    with pytest.raises(DataError, match="not found"):
        open_source(f"module:{tmp_path / 'none.py'}:feeds", inputs)


@pytest.mark.torch
def test_dataloader(small_model, samples):
    import torch
    from torch.utils.data import DataLoader, TensorDataset

    labels = torch.arange(len(samples))
    loader = DataLoader(TensorDataset(torch.from_numpy(samples), labels), batch_size=5, shuffle=False)
    src = from_dataloader(loader, ["x"], model_inputs(small_model))
    assert len(src) == 5
    whole = collect_statistics(small_model, TENSORS, ListSource(batches(samples, 6)), QUIET)
    assert collect_statistics(small_model, TENSORS, src, QUIET) == whole
    # without inputs the batches are still checked by calibration against the model
    bad = samples.copy()
    bad[7, 1, 2, 3] = np.nan
    loader = DataLoader(TensorDataset(torch.from_numpy(bad)), batch_size=4)
    with pytest.raises(DataError, match="batch 1.*NaN"):
        collect_statistics(small_model, TENSORS, from_dataloader(loader, "x"), QUIET)
    with pytest.raises(DataError, match="not model inputs"):
        from_dataloader(loader, ["image"], model_inputs(small_model))
