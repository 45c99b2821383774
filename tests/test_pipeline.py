from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
from onnx import numpy_helper

from trtcompress.config import Config
from trtcompress.errors import ConfigError, DataError, StageError
from trtcompress.model_io import load_model
from trtcompress.pipeline import Pipeline
from trtcompress.rundir import RunDir
from trtcompress.stage import StageResult, get_stage, register_stage


@dataclasses.dataclass(frozen=True)
class ScaleConfig(Config):
    factor: float = 2.0

    def validate(self):
        if self.factor == 0:
            raise ConfigError("factor must not be 0")


@register_stage("test-scale", ScaleConfig)
def scale_weights(model, config: ScaleConfig) -> StageResult:
    changed = 0
    for t in model.graph.initializer:
        a = numpy_helper.to_array(t) * config.factor
        t.CopyFrom(numpy_helper.from_array(a.astype(np.float32), t.name))
        changed += a.size
    return StageResult(model, {"scaled": changed}, {"note.txt": f"x{config.factor}"})


def failing_stage(model, config):
    raise DataError("calibration data has NaN")


def test_registry_lookup():
    assert get_stage(ScaleConfig()).fn is scale_weights
    assert get_stage("test-scale").config_type is ScaleConfig
    with pytest.raises(KeyError):
        get_stage("no-such-stage")


def test_pipeline_runs_stages_in_order_and_records(tiny_model, tmp_path):
    model = load_model(tiny_model)
    before = numpy_helper.to_array(model.graph.initializer[0]).copy()
    with RunDir(tmp_path / "runs", "r1") as run:
        result = Pipeline([ScaleConfig(2.0), ScaleConfig(3.0)]).run(model, run)
        run.write_report({"stages": result.report()})
    after = numpy_helper.to_array(result.model.graph.initializer[0])
    np.testing.assert_allclose(after, before * 6, rtol=1e-6)
    report = json.loads((tmp_path / "runs" / "r1" / "report.json").read_text())
    assert [s["name"] for s in report["stages"]] == ["test-scale", "test-scale"]
    assert report["stages"][1]["config"]["factor"] == 3.0
    assert (tmp_path / "runs" / "r1" / "artifacts" / "01-test-scale-note.txt").read_text() == "x3.0"


def test_failure_names_the_stage_and_leaves_no_run_dir(tiny_model, tmp_path):
    with pytest.raises(StageError, match="'failing_stage' failed: calibration data has NaN .*test-scale"):
        with RunDir(tmp_path / "runs", "bad") as run:
            Pipeline([ScaleConfig(), (failing_stage, ScaleConfig())]).run(load_model(tiny_model), run)
    assert list((tmp_path / "runs").iterdir()) == []


def test_run_name_is_checked(tmp_path):
    with pytest.raises(ConfigError):
        RunDir(tmp_path, "../escape")


@dataclasses.dataclass(frozen=True)
class NoiseConfig(Config):
    """A stage that declares no contract and breaks 2:4 (fills every zero weight)."""

    eps: float = 1e-3


@register_stage("test-noise", NoiseConfig)
def fill_zeros(model, config: NoiseConfig) -> StageResult:
    for t in model.graph.initializer:
        a = numpy_helper.to_array(t).astype(np.float32)
        t.CopyFrom(numpy_helper.from_array(np.where(a == 0, config.eps, a).astype(np.float32), t.name))
    return StageResult(model, {})


def _stages(*names, **options):
    from trtcompress.job import stage_config

    return [stage_config(n, options.get(n, {})) for n in names]


def test_lowrank_after_sparsify_is_refused_before_anything_runs():
    with pytest.raises(ConfigError, match=r"stage 'lowrank' after 'sparsify': low-rank factors are dense.*run lowrank first, then sparsify"):
        Pipeline(_stages("sparsify", "lowrank"))
    Pipeline(_stages("lowrank", "sparsify"))  # the order that works


def test_a_weight_rewriting_stage_after_quantize_is_refused():
    with pytest.raises(ConfigError, match=r"'lowrank' after 'quantize'"):
        Pipeline(_stages("quantize", "lowrank"))
    with pytest.raises(ConfigError, match=r"'quantize' after 'quantize': the model is already quantized"):
        Pipeline(_stages("quantize", "quantize"))


def test_sparsify_after_quantize_is_warned_about(tiny_model):
    p = Pipeline(_stages("quantize", "sparsify", quantize={"calib": "random:8", "sensitivity_samples": 0, "progress": False}, sparsify={"min_channels": 4}))
    logged = []
    result = p.run(load_model(tiny_model), log=logged.append)
    assert result.stages[0].warnings == []
    assert result.stages[1].warnings == ["stage 'sparsify' after 'quantize': the zeros stay exact in int8, but the weight scales were calibrated on the dense weights; sparsify before quantize keeps more accuracy"]
    assert any(m.startswith("warning: stage 'sparsify' after 'quantize'") for m in logged)


@pytest.mark.parametrize("target", ["cpu", "tensorrt"])
def test_quantize_keeps_the_2to4_layers_sparsify_established(tiny_model, target):
    p = Pipeline(_stages("sparsify", "quantize", sparsify={"min_channels": 4}, quantize={"target": target, "calib": "random:8", "sensitivity_samples": 0, "progress": False}))
    result = p.run(load_model(tiny_model))
    assert [s.warnings for s in result.stages] == [[], []]


def test_a_stage_that_breaks_an_established_property_is_named(tiny_model):
    steps = _stages("sparsify", sparsify={"min_channels": 4}) + [NoiseConfig()]
    with pytest.raises(StageError, match=r"stage 'test-noise' broke what 'sparsify' established: layers with 2:4 weights 1 -> 0") as e:
        Pipeline(steps).run(load_model(tiny_model))
    assert e.value.stage == "test-noise" and [r.name for r in e.value.records] == ["sparsify"]


def test_a_stage_that_gives_nothing_it_ensures_says_so(tiny_model):
    result = Pipeline(_stages("sparsify")).run(load_model(tiny_model))  # min_channels 16: every layer too small
    assert result.stages[0].warnings == ["stage 'sparsify' left no layers with 2:4 weights in the model"]
