"""A small teacher trained on scikit-learn's digits (about a second on one core)."""
from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("sklearn")

from trtcompress.finetune import open_training_data  # noqa: E402


def mlp():
    return torch.nn.Sequential(
        torch.nn.Flatten(), torch.nn.Linear(64, 128), torch.nn.ReLU(), torch.nn.Dropout(0.1),
        torch.nn.Linear(128, 128), torch.nn.ReLU(), torch.nn.Linear(128, 10),
    )


@pytest.fixture(scope="session")
def teacher():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    model = mlp()
    data = open_training_data("digits:train", 64)
    opt = torch.optim.Adam(model.parameters(), 3e-3)
    for _ in range(12):
        for x, y in data:
            loss = torch.nn.functional.cross_entropy(model(x), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
    torch.set_num_threads(threads)
    return model.eval()


@pytest.fixture(scope="session")
def digits():
    return open_training_data("digits:train", 64), open_training_data("digits:test", 512, shuffle=False)


@pytest.fixture(autouse=True)
def _one_thread():
    """Tiny models: one thread is fastest and steadiest on a shared 2-core machine."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
