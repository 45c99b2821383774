"""Training data readers: user factories (files, modules), built-in datasets, batch checks."""
from __future__ import annotations

import textwrap

import pytest

torch = pytest.importorskip("torch")

from trtcompress.errors import ConfigError, DataError  # noqa: E402
from trtcompress.finetune import open_training_data  # noqa: E402
from trtcompress.userref import is_reference as is_factory_spec, load_callable  # noqa: E402


def _write(tmp_path, body):
    f = tmp_path / "user_data.py"
    f.write_text(textwrap.dedent(body))
    return f


def test_factory_file_returning_a_dataloader(tmp_path):
    f = _write(tmp_path, """
        import torch
        from torch.utils.data import DataLoader, TensorDataset
        def loader():
            g = torch.Generator().manual_seed(0)
            ds = TensorDataset(torch.randn(10, 3, generator=g), torch.arange(10) % 2)
            return DataLoader(ds, batch_size=4, shuffle=True)
    """)
    data = open_training_data(f"{f}:loader")
    assert len(data) == 3
    torch.manual_seed(1)
    a = [y.tolist() for _, y in data]
    torch.manual_seed(1)
    b = [y.tolist() for _, y in data]
    assert a == b and sum(len(y) for y in a) == 10  # the global seed fixes the shuffle


def test_generator_factory_is_called_again_each_epoch(tmp_path):
    f = _write(tmp_path, """
        import torch
        CALLS = []
        def gen():
            CALLS.append(1)
            for i in range(3):
                yield torch.ones(2, 4) * i, torch.tensor([0, 1])
    """)
    data = open_training_data(f"{f}:gen")
    assert len(list(data)) == 3 and len(list(data)) == 3


@pytest.mark.parametrize("body,match", [
    ("def bad():\n    return [torch.ones(2)]\n", "pair"),
    ("def bad():\n    return [(torch.ones(2, 3), torch.ones(2))]\n", "class indices"),
    ("def bad():\n    return [(torch.ones(2, 3), torch.tensor([0, 1, 2]))]\n", "labels"),
    ("def bad():\n    return [(torch.full((2, 3), float('nan')), torch.tensor([0, 1]))]\n", "NaN"),
    ("def bad():\n    return 3\n", "not an iterable"),
])
def test_bad_batches_are_user_errors(tmp_path, body, match):
    f = _write(tmp_path, "import torch\n" + body)
    with pytest.raises(DataError, match=match):
        list(open_training_data(f"{f}:bad"))


def test_module_factory_and_spec_errors(tmp_path):
    assert is_factory_spec("pkg.mod:fn") and is_factory_spec("a/b.py:fn") and not is_factory_spec("digits")
    assert load_callable("json:dumps")([1]) == "[1]"
    with pytest.raises(ConfigError, match="not found"):
        load_callable(f"{tmp_path}/missing.py:fn")
    with pytest.raises(ConfigError, match="no attribute .nope."):
        load_callable("json:nope")
    with pytest.raises(ConfigError, match="cannot import module"):
        load_callable("no_such_module_xyz:fn")
    with pytest.raises(ConfigError):
        open_training_data("nonsense")


def test_builtin_digits_with_split_and_limit():
    data = open_training_data("digits:test:100", batch_size=32, shuffle=False)
    xs = [x for x, _ in data]
    assert sum(len(x) for x in xs) == 100 and tuple(xs[0].shape[1:]) == (1, 8, 8)
    with pytest.raises(ConfigError):
        open_training_data("digits:train:many")


def test_builtin_fashion_mnist_subset():
    from trtcompress.zoo.fashion_mnist import dataset_dir

    if not (dataset_dir() / "t10k-labels-idx1-ubyte.gz").is_file():
        pytest.skip("Debian package dataset-fashion-mnist not installed")
    x, y = next(iter(open_training_data("fashion-mnist:test:100", batch_size=64, shuffle=False)))
    assert tuple(x.shape) == (64, 1, 28, 28) and x.dtype == torch.float32 and y.dtype == torch.int64
    assert float(x.max()) <= 1.0
