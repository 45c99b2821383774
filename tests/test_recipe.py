"""Recipe files (trtcompress.recipe): TOML and JSON read with one-line errors, and the recipe a run
writes (runs/<name>/recipe.toml) reads back to the same run.

- the TOML writer's text reads back (tomllib) to the same config, strings with quotes,
  backslashes, control characters and non-ASCII included, stages as [[stages]]
- a config TOML cannot hold (a null where the default is not) is refused, and the run falls back
  to recipe.json
- an unknown key, a wrong type and bad TOML are each one line naming them and the file
  (through the CLI, exit 2: tests/test_config_errors.py)
- a real run (fashion_cnn, Fashion-MNIST, sparsify + quantize): `compress --recipe
  runs/a/recipe.toml --name b` is the same resolved config and the same model bytes
"""
from __future__ import annotations

import json
import re

import pytest
import tomllib
from trtc_support import cli

from trtcompress import zoo
from trtcompress.errors import ConfigError
from trtcompress.job import CompressConfig, stage_config
from trtcompress.recipe import read_recipe, recipe_text, toml_text


def test_toml_text_reads_back_to_the_same_config():
    from trtcompress.comparison import CompareConfig

    odd = 'dir with "quotes"\\back\tslash\nline\x01\x7f é ✓'
    cfg = CompressConfig(model="m.onnx", data=odd, calib="c:d", limit=3, compare=CompareConfig(min_cosine=0.995, atol=1e-05),
                         stages=(stage_config("sparsify", {"include": ["a*", "b"]}), stage_config("quantize", {"target": "cpu", "method": "percentile"})))
    text = recipe_text(cfg)
    assert text.count("[[stages]]") == 2 and "[compare]" in text
    assert CompressConfig.from_dict(tomllib.loads(text)) == cfg
    # keys that are not bare, nested tables inside an array of tables, empty lists, inline tables
    d = {"a.b": 1, "x": {"y z": [1.5, float("inf")], "e": []}, "t": [{"k": "v", "sub": {"q": True}}, {"k": "w"}], "l": [[1, 2], {"i": 1}]}
    back = tomllib.loads(toml_text(d))
    assert back == d


def test_a_config_toml_cannot_hold_is_written_as_json(tmp_path):
    from trtcompress.recipe import write_run_recipe
    from trtcompress.rundir import RunDir

    cfg = CompressConfig(model="m.onnx", stages=(stage_config("lowrank", {"limit": None}),))  # default 32: a left-out null would read back as 32
    with pytest.raises(ConfigError, match="TOML cannot hold this config's stages"):
        recipe_text(cfg)
    run = RunDir(tmp_path, "r")
    assert write_run_recipe(run, cfg) == "recipe.json"
    assert CompressConfig.from_dict(read_recipe(run.path / "recipe.json")) == cfg
    run.abort()


@pytest.mark.parametrize("text, message", [
    ("itrations = 10\n", "recipe r.toml: CompressConfig: unknown option(s) itrations; known:"),
    ('[[stages]]\nstage = "sparsify"\npermutate = true\n', "recipe r.toml: SparsifyConfig: unknown option(s) permutate"),
    ('[[stages]]\nstage = "sparsify"\npermute = "false"\n', "recipe r.toml: SparsifyConfig.permute must be bool, got str 'false'"),
    ("[bench]\nbatch_sizes = [1, \"8\"]\n", "recipe r.toml: BenchConfig.batch_sizes must be list of int"),
    ("x = [1,\n", "recipe r.toml is not valid TOML"),
])
def test_a_bad_toml_recipe_is_one_line_naming_the_key(tmp_path, monkeypatch, text, message):
    from trtcompress.cli.compress import build_config
    from trtcompress.cli.main import build_parser

    (tmp_path / "r.toml").write_text(text)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError) as e:
        build_config(build_parser("compress").parse_args(["compress", "m.onnx", "--recipe", "r.toml"]))
    assert message in str(e.value) and "\n" not in str(e.value)


def test_json_recipes_still_read(tmp_path):
    (tmp_path / "r.json").write_text(json.dumps({"model": "m.onnx", "stages": [{"stage": "sparsify", "permute": True}]}))
    assert read_recipe(tmp_path / "r.json")["stages"][0]["permute"] is True
    (tmp_path / "r.txt").write_text('model = "m.onnx"\n')  # another suffix: whichever parses
    assert read_recipe(tmp_path / "r.txt") == {"model": "m.onnx"}


def test_the_recipe_a_run_writes_reads_back_to_the_same_run(fashion_dirs, tmp_path):
    recipe = tmp_path / "mine.toml"
    recipe.write_text(f'data = "{fashion_dirs / "eval"}"\ncalib = "{fashion_dirs / "calib"}"\nskip_bench = true\n'
                      '[[stages]]\nstage = "sparsify"\n[[stages]]\nstage = "quantize"\ntarget = "cpu"\n')
    model = str(zoo.onnx_path("fashion_cnn"))
    first = cli("compress", model, "--recipe", str(recipe), "--name", "a", "--iterations", "7", cwd=tmp_path, check=True)
    assert "PASSED" in first.stdout
    a = tmp_path / "runs" / "a"
    written = tomllib.loads((a / "recipe.toml").read_text())
    assert written["model"] == model and written["name"] == "a" and written["bench"]["iterations"] == 7
    assert [s["stage"] for s in written["stages"]] == ["sparsify", "quantize"]
    # no model on the command line: the recipe's; a flag still overrides the recipe
    cli("compress", "--recipe", str(a / "recipe.toml"), "--name", "b", cwd=tmp_path, check=True)
    b = tmp_path / "runs" / "b"
    ra, rb = (json.loads((d / "report.json").read_text()) for d in (a, b))
    assert ra["recipe"] == rb["recipe"] == "recipe.toml"
    assert {**ra["config"], "name": "b"} == rb["config"]
    assert not any(s["cached"] for s in rb["stages"])  # computed again (no --resume), to the same bytes
    assert (a / "artifacts" / "model.onnx").read_bytes() == (b / "artifacts" / "model.onnx").read_bytes()
    # the written recipe names its run: read back as it is, it refuses to replace it ...
    again = cli("compress", "--recipe", str(a / "recipe.toml"), cwd=tmp_path)
    assert again.returncode == 2 and "runs/a exists" in again.stderr
    # ... and `--name a --resume` alone resumes it from its recipe, every stage reused from the cache
    resumed = cli("compress", "--name", "a", "--resume", cwd=tmp_path, check=True)
    assert "stage sparsify: reused (cached)" in resumed.stderr and re.search(r"stage quantize: [\d.]+ s \(reused from the stage cache\)", resumed.stdout)
    rr = json.loads((a / "report.json").read_text())
    assert all(s["cached"] for s in rr["stages"]) and {**rr["config"], "resume": False} == ra["config"]
    assert (a / "artifacts" / "model.onnx").read_bytes() == (b / "artifacts" / "model.onnx").read_bytes()


def test_the_readme_recipe_is_a_valid_config():
    from pathlib import Path

    text = re.search(r"```toml\n(.*?)```", (Path(__file__).resolve().parents[1] / "README.md").read_text(), re.S).group(1)
    cfg = CompressConfig.from_dict(tomllib.loads(text))
    assert [type(s).__name__ for s in cfg.stages] == ["SparsifyConfig", "QuantizeConfig"] and cfg.compare.min_top1 == 0.8
    assert CompressConfig.from_dict(tomllib.loads(recipe_text(cfg))) == cfg


def test_resume_by_name_without_a_recipe_says_what_to_give(tmp_path, monkeypatch):
    from trtcompress.cli.compress import build_config
    from trtcompress.cli.main import build_parser

    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError, match=r"no recipe to resume in runs/gone .*give MODEL and --recipe or flags again with --resume"):
        build_config(build_parser("compress").parse_args(["compress", "--name", "gone", "--resume"]))
    with pytest.raises(ConfigError, match="give a model"):  # no model, no recipe, no --resume
        build_config(build_parser("compress").parse_args(["compress", "--name", "gone"]))
