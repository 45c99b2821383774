"""Tux Paint's stamps as unlabelled pictures of objects for label-free distillation."""
from __future__ import annotations

import numpy as np
import pytest

from trtcompress.data import ModelInput, open_source
from trtcompress.data.readers import ReaderOptions
from trtcompress.errors import ConfigError, DataError
from trtcompress.zoo import stamps

X = [ModelInput("x", (None, 3, 224, 224), np.dtype(np.float32))]


@pytest.fixture(scope="module")
def paths():
    try:
        return stamps.stamp_paths()
    except DataError as e:
        pytest.skip(str(e))


def test_only_objects(paths):
    rel = [p.relative_to(stamps.STAMPS_DIR).as_posix() for p in paths]
    assert len(paths) >= 300 and rel == sorted(rel)
    assert not [r for r in rel if any(k in r for k in ("symbols/", "cartoon", "flags/", "roadsigns/", "seasonal/", "_mirror."))]
    assert {r.split("/")[0] for r in rel} >= {"animals", "food", "plants", "vehicles"}


def test_reader_gives_objects_on_white(paths):
    x = np.concatenate([f["x"] for f in open_source("stamps:24", X, ReaderOptions(batch_size=8))])
    assert x.shape == (24, 3, 224, 224) and x.dtype == np.float32
    # efficientnet-lite scaling: white is 1.0; the transparent surround is composited onto white
    # (a plain RGBA -> RGB conversion leaves whatever colour the transparent pixels hold)
    corners = x[:, :, [0, 0, -1, -1], [0, -1, 0, -1]]
    assert np.allclose(corners, 1.0, atol=0.02)
    centre = x[:, :, 100:124, 100:124].reshape(24, -1)
    assert (centre.min(1) < 0.6).mean() > 0.9  # the object sits in the middle


def test_bad_spec():
    with pytest.raises(ConfigError, match="give a count"):
        open_source("stamps:all", X, ReaderOptions())
