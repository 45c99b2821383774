import pytest

from trtcompress.errors import ConfigError
from trtcompress.trt.version import TrtVersion, parse_version


@pytest.mark.parametrize("text, expected", [("10.3.0", TrtVersion(10, 3, 0)), ("8.6", TrtVersion(8, 6, 0)), ("8.6.1.6", TrtVersion(8, 6, 1)), ("11.4.1", TrtVersion(11, 4, 1))])
def test_parse(text, expected):
    assert parse_version(text) == expected


@pytest.mark.parametrize("text", ["", "ten", "7.1.3", "12.0", "10.3.x"])
def test_parse_refuses(text):
    with pytest.raises(ConfigError):
        parse_version(text)


def test_capabilities_follow_the_version_table():
    v86, v103, v11 = parse_version("8.6.1"), parse_version("10.3.0"), parse_version("11.0")
    assert (v86.max_onnx_opset, v103.max_onnx_opset) == (17, 20)
    assert v86.implicit_int8 and v103.implicit_int8 and not v11.implicit_int8
    assert v103.precision_flags and not v11.precision_flags
    assert not v86.strongly_typed and v103.strongly_typed and v11.strongly_typed
    assert v103.dla and not parse_version("10.8").dla and not v11.dla and parse_version("11.4.1").dla
    assert (parse_version("8.5.2").cache_version_number, v103.cache_version_number) == (8502, 100300)
    with pytest.raises(ConfigError, match="no implicit INT8"):
        v11.cache_version_number
