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
