import numpy as np
import pytest

from trtcompress.errors import ConfigError
from trtcompress.specs import parse_input_spec, parse_input_specs


def test_parse_shapes_and_dtypes():
    s = parse_input_spec("x:1x3x224x224")
    assert s.name == "x" and s.shape == (1, 3, 224, 224) and s.np_dtype == np.float32
    t = parse_input_spec("ids:1x64:int64")
    assert t.np_dtype == np.int64 and t.concrete_shape(8) == (8, 64)
    d = parse_input_spec("x:batchx3")
    assert d.shape == ("batch", 3) and d.concrete_shape(4) == (4, 3)


@pytest.mark.parametrize("bad", ["x", ":1x3", "x:1x0", "x:1x3:complex7", "x:1x-3"])
def test_bad_specs(bad):
    with pytest.raises(ConfigError):
        parse_input_spec(bad)


def test_repeated_names():
    with pytest.raises(ConfigError, match="repeat"):
        parse_input_specs(["x:1", "x:2"])
