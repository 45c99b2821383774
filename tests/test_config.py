import dataclasses

import pytest

from trtcompress.benchmark import BenchConfig
from trtcompress.comparison import CompareConfig
from trtcompress.job import CompressConfig
from trtcompress.data.preprocess import PreprocessConfig
from trtcompress.errors import ConfigError
from trtcompress.runners import RunnerOptions


@pytest.mark.parametrize("cfg", [BenchConfig(batch_sizes=(1, 32), duration=2.0), CompareConfig(atol=1e-3, min_top1=0.9), PreprocessConfig(order="L", mean=(0.5,), std=(0.25,)), RunnerOptions(threads=2)])
def test_json_round_trip(cfg):
    again = type(cfg).from_json(cfg.to_json())
    assert again == cfg


def test_nested_config_round_trip():
    cfg = CompressConfig(model="m.onnx", compare=CompareConfig(min_cosine=0.99), bench=BenchConfig(batch_sizes=(1, 8)))
    again = CompressConfig.from_json(cfg.to_json())
    assert again == cfg
    assert isinstance(again.bench, BenchConfig) and again.bench.batch_sizes == (1, 8)


def test_configs_are_frozen_and_validate():
    cfg = BenchConfig()
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.iterations = 3
    with pytest.raises(ConfigError):
        BenchConfig(batch_sizes=(0,))
    with pytest.raises(ConfigError, match="unknown option"):
        BenchConfig.from_dict({"iterationz": 3})
    with pytest.raises(ConfigError, match="version"):
        BenchConfig.from_dict({"config_version": 99})
