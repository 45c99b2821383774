"""Bad configs and run directories: each gets a one-line ConfigError naming what is wrong.

One test per bad input:

- a recipe stage option of the wrong type: ``"permute": "false"`` (a truthy string, never a bool)
- an int option given as a string: ``"min_channels": "16"``
- a bool where an int is expected: ``min_channels: true``
- an int option given as a float: ``"iterations": 2.5``
- a string where a list is expected: ``"op_types": "Conv"``
- a list with an item of the wrong type: ``"batch_sizes": [1, "8"]``
- a number where a string is expected: ``"data": 8``
- a nested config that is not a mapping: ``"compare": 0.99``
- an unknown key in a stage's options (recipe)
- an unknown key at the top of a recipe
- a wrong type in a recipe's nested stage, through the CLI (exit 2, one line)
- a wrong type from Python (``SparsifyConfig(permute="yes")``)
- a choice outside its set, from Python (``QuantizeConfig(target="gpu")``)
- an existing run directory without ``--overwrite`` (the earlier run is left intact)
- an existing directory that is not a run, even with ``--overwrite`` (left intact)
- a file where the run directory would go, even with ``--overwrite``
- a recipe that runs lowrank after sparsify (refused before anything runs)
"""
from __future__ import annotations

import json

import pytest

from trtc_support import cli
from trtcompress.benchmark import BenchConfig
from trtcompress.errors import ConfigError
from trtcompress.job import CompressConfig, compress
from trtcompress.rundir import RunDir
from trtcompress.stages.quantize import QuantizeConfig
from trtcompress.stages.sparsify import SparsifyConfig


def _one_line(e: pytest.ExceptionInfo) -> str:
    msg = str(e.value)
    assert "\n" not in msg
    return msg


def _recipe(**top) -> dict:
    return {"model": "m.onnx", **top}


def test_truthy_string_is_not_a_bool():
    with pytest.raises(ConfigError) as e:
        CompressConfig.from_dict(_recipe(stages=[{"stage": "sparsify", "permute": "false"}]))
    assert _one_line(e) == "SparsifyConfig.permute must be bool, got str 'false'"


def test_int_given_as_string():
    with pytest.raises(ConfigError, match=r"SparsifyConfig.min_channels must be int, got str '16'"):
        CompressConfig.from_dict(_recipe(stages=[{"stage": "sparsify", "min_channels": "16"}]))


def test_bool_is_not_an_int():
    with pytest.raises(ConfigError, match=r"SparsifyConfig.min_channels must be int, got bool True"):
        SparsifyConfig.from_dict({"min_channels": True})


def test_float_is_not_an_int():
    with pytest.raises(ConfigError, match=r"BenchConfig.iterations must be int, got float 2.5"):
        CompressConfig.from_dict(_recipe(bench={"iterations": 2.5}))


def test_string_is_not_a_list():
    with pytest.raises(ConfigError, match=r"SparsifyConfig.op_types must be list of str, got str 'Conv'"):
        SparsifyConfig.from_dict({"op_types": "Conv"})


def test_list_item_of_the_wrong_type():
    with pytest.raises(ConfigError, match=r"BenchConfig.batch_sizes must be list of int, got list \[1, '8'\]"):
        CompressConfig.from_dict(_recipe(bench={"batch_sizes": [1, "8"]}))


def test_number_is_not_a_string():
    with pytest.raises(ConfigError, match=r"CompressConfig.data must be str, got int 8"):
        CompressConfig.from_dict(_recipe(data=8))


def test_nested_config_must_be_a_mapping():
    with pytest.raises(ConfigError, match=r"CompressConfig.compare must be CompareConfig \(a mapping\), got float 0.99"):
        CompressConfig.from_dict(_recipe(compare=0.99))


def test_unknown_stage_option():
    with pytest.raises(ConfigError, match=r"SparsifyConfig: unknown option\(s\) permutate; known: .*permute"):
        CompressConfig.from_dict(_recipe(stages=[{"stage": "sparsify", "permutate": True}]))


def test_unknown_recipe_key():
    with pytest.raises(ConfigError, match=r"CompressConfig: unknown option\(s\) itrations"):
        CompressConfig.from_dict(_recipe(itrations=10))


def test_recipe_type_error_through_the_cli(tiny_model, tmp_path):
    recipe = tmp_path / "recipe.json"
    recipe.write_text(json.dumps({"stages": [{"stage": "sparsify", "permute": "false"}]}))
    r = cli("compress", str(tiny_model), "--recipe", recipe.name, "--no-bench", cwd=tmp_path)
    assert r.returncode == 2
    assert r.stderr.strip() == "trtcompress compress: error: recipe recipe.json: SparsifyConfig.permute must be bool, got str 'false'"
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())


def test_wrong_type_from_python():
    with pytest.raises(ConfigError, match=r"SparsifyConfig.permute must be bool, got str 'yes'"):
        SparsifyConfig(permute="yes")


def test_choice_outside_its_set_from_python():
    with pytest.raises(ConfigError, match=r"target must be one of .*got 'gpu'"):
        QuantizeConfig(target="gpu")


def _run(tiny_model, tmp_path, **kw):
    return compress(CompressConfig(model=str(tiny_model), runs_dir=str(tmp_path / "runs"), name="r", data="random:2", bench=BenchConfig(iterations=5, rounds=1), **kw))


def test_existing_run_directory_without_overwrite(tiny_model, tmp_path):
    first = _run(tiny_model, tmp_path)
    before = (first.run_dir / "report.json").read_bytes()
    with pytest.raises(ConfigError) as e:
        _run(tiny_model, tmp_path)
    assert "exists; choose another --name or pass --overwrite" in _one_line(e)
    assert (first.run_dir / "report.json").read_bytes() == before
    again = _run(tiny_model, tmp_path, overwrite=True)  # the flag the message names replaces it
    assert json.loads((again.run_dir / "report.json").read_text())["created"]
    assert sorted(p.name for p in (tmp_path / "runs").iterdir()) == [".cache", "r"]  # the stage cache beside the run


def test_existing_directory_that_is_not_a_run(tmp_path):
    mine = tmp_path / "runs" / "r"
    mine.mkdir(parents=True)
    (mine / "thesis.tex").write_text("years of work")
    with pytest.raises(ConfigError, match="is not a trtcompress run directory .* left alone"):
        RunDir(tmp_path / "runs", "r", overwrite=True)
    assert (mine / "thesis.tex").read_text() == "years of work"


def test_file_where_the_run_directory_would_go(tmp_path):
    (tmp_path / "runs").mkdir()
    (tmp_path / "runs" / "r").write_text("a file")
    with pytest.raises(ConfigError, match="not a trtcompress run directory"):
        RunDir(tmp_path / "runs", "r", overwrite=True)
    assert (tmp_path / "runs" / "r").read_text() == "a file"


def test_recipe_with_lowrank_after_sparsify(tiny_model, tmp_path):
    recipe = tmp_path / "recipe.json"
    recipe.write_text(json.dumps({"stages": [{"stage": "sparsify"}, {"stage": "lowrank"}]}))
    r = cli("compress", str(tiny_model), "--recipe", str(recipe), "--name", "x", cwd=tmp_path)
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1
    assert "stage 'lowrank' after 'sparsify': low-rank factors are dense" in r.stderr
    assert not (tmp_path / "runs" / "x").exists()
