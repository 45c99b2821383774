"""The installed ``trtcompress`` command: verbs, exit codes, one-line errors."""
from __future__ import annotations

import json

import numpy as np
import pytest

from trtc_support import cli, tiny_classifier


def test_help_lists_verbs():
    out = cli("--help", check=True).stdout
    for verb in ("export", "compare", "bench", "compress"):
        assert verb in out


def test_compare_passes_and_fails_with_exit_codes(tiny_model, tmp_path):
    other = tiny_classifier(tmp_path / "other.onnx", seed=3)
    ok = cli("compare", str(tiny_model), str(tiny_model), "--atol", "0", "--json")
    assert ok.returncode == 0 and json.loads(ok.stdout)["passed"] is True
    bad = cli("compare", str(tiny_model), str(other), "--min-cosine", "0.999")
    assert bad.returncode == 1 and "FAILED" in bad.stdout


def test_compare_on_npz_data(tiny_model, tmp_path):
    d = tmp_path / "data"
    d.mkdir()
    for i in range(3):
        np.savez(d / f"{i}.npz", x=np.random.default_rng(i).standard_normal((2, 3, 16, 16)).astype(np.float32))
    r = cli("compare", str(tiny_model), str(tiny_model), "--data", str(d), "--json", check=True)
    assert json.loads(r.stdout)["samples"] == 6


@pytest.mark.parametrize(
    "args, match",
    [
        (["compare", "missing.onnx", "missing.onnx"], "model file not found: missing.onnx"),
        (["bench", "{bad}"], "corrupt or truncated"),
        (["compare", "{tiny}", "{tiny}", "--data", "{nan}"], "contains NaN"),
        (["bench", "{tiny}", "--batch-sizes", "a,b"], "--batch-sizes"),
        (["compress", "{tiny}", "--stages", "no-such-stage", "--no-bench"], "unknown stage"),
    ],
)
def test_user_errors_are_one_line_with_nonzero_exit(tiny_model, tmp_path, args, match):
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"\x01\x02not onnx")
    nan = tmp_path / "nan"
    nan.mkdir()
    np.savez(nan / "s.npz", x=np.full((1, 3, 16, 16), np.nan, np.float32))
    r = cli(*[a.format(tiny=tiny_model, bad=bad, nan=nan) for a in args], cwd=tmp_path)
    assert r.returncode == 2, r.stderr
    assert match in r.stderr and len(r.stderr.strip().splitlines()) == 1 and "Traceback" not in r.stderr
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())


def test_verbose_shows_traceback(tmp_path):
    r = cli("compare", "missing.onnx", "missing.onnx", "--verbose", cwd=tmp_path)
    assert r.returncode != 0 and "Traceback" in r.stderr


def test_bench_json(tiny_model):
    r = cli("bench", str(tiny_model), str(tiny_model), "--batch-sizes", "1,2", "--iterations", "10", "--rounds", "2", "--json", check=True)
    out = json.loads(r.stdout)
    assert set(out["results"]) == {"1", "2"} and len(out["results"]["2"]) == 2


def test_compress_onnx_writes_run_dir(tiny_model, tmp_path):
    r = cli("compress", str(tiny_model), "--name", "t", "--iterations", "10", "--json", cwd=tmp_path, check=True)
    report = json.loads(r.stdout)
    run = tmp_path / "runs" / "t"
    assert (run / "report.json").exists() and (run / "artifacts" / "model.onnx").exists()
    m = report["metrics"]
    assert m["compression"]["ratio_disk"] == pytest.approx(1.0, abs=0.05) and m["pruning_rate"]["percent"] == 0
    assert m["quantization_error"]["max_abs"] == 0 and m["speedup"] > 0


@pytest.mark.torch
def test_export_cli(tmp_path):
    (tmp_path / "net.py").write_text(
        "import torch\nfrom torch import nn\n"
        "def make():\n    torch.manual_seed(0)\n    return nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 6 * 6, 2))\n"
    )
    r = cli("export", "net.py:make", "--input", "x:1x3x8x8", "-o", "net.onnx", "--json", cwd=tmp_path, check=True)
    out = json.loads(r.stdout)  # the whole of stdout: the exporter's own chatter goes to stderr
    assert out["exporter"] in ("dynamo", "torchscript") and out["check"]["random"]["max_abs"] < 1e-5
    assert "exporting net.py:make to ONNX ..." in r.stderr and "exporting net.py:make to ONNX: done in" in r.stderr
    assert (tmp_path / "net.onnx").exists()


def test_inspect_reads_both_quantized_forms(tiny_model, tmp_path):
    """The CPU form's integer operators (QLinearConv, MatMulIntegerToFloat, ...) are layers too,
    and a 2:4 weight stays 2:4 through either form."""
    from trtcompress.model_io import load_model, save_model
    from trtcompress.stages.quantize import QuantizeConfig, quantize
    from trtcompress.stages.sparsify import SparsifyConfig, sparsify

    pruned = sparsify(load_model(tiny_model), SparsifyConfig(min_channels=4)).model
    for target in ("cpu", "tensorrt"):
        q = quantize(pruned, QuantizeConfig(target=target, calib="random:8", sensitivity_samples=0, progress=False)).model
        path = tmp_path / f"{target}.onnx"
        save_model(q, path)
        r = cli("inspect", str(path), "--json", check=True)
        layers = {l["layer"]: l for l in json.loads(r.stdout)["layers"] if l["shape"]}
        assert set(layers) == {"Conv_0", "Gemm_4"}, (target, layers)
        assert all(l["quantized"] for l in layers.values())
        assert layers["Gemm_4"]["follows_2to4"] and layers["Gemm_4"]["sparsity"] == 0.5


def _parse(*argv):
    from trtcompress.cli.main import build_parser

    return build_parser(argv[0]).parse_args(list(argv))


@pytest.mark.parametrize("verb, module, config, skipped", [
    ("quantize", "trtcompress.stages.quantize", "QuantizeConfig", set()),
    ("sparsify", "trtcompress.stages.sparsify", "SparsifyConfig", set()),
    ("lowrank", "trtcompress.lowrank", "LowRankConfig", set()),
    ("share", "trtcompress.share", "ShareConfig", set()),
    ("bench", "trtcompress.benchmark", "BenchConfig", set()),
    ("compare", "trtcompress.comparison", "CompareConfig", set()),
    ("compare", "trtcompress.data", "DataOptions", set()),
    ("debug", "trtcompress.data", "DataOptions", set()),
    ("finetune", "trtcompress.finetune", "FinetuneConfig", set()),
])
def test_every_config_field_is_a_flag_whose_default_is_the_dataclasses(verb, module, config, skipped):
    """A default lives in the dataclass only: no flag given gives exactly the default config."""
    import dataclasses
    import importlib

    from trtcompress.cli.common import config_from_args

    cls = getattr(importlib.import_module(module), config)
    required = {"quantize": ["m.onnx", "-o", "o.onnx"], "sparsify": ["m.onnx", "-o", "o.onnx"], "lowrank": ["m.onnx", "-o", "o.onnx"],
                "share": ["m.onnx", "-o", "o.onnx"], "bench": ["m.onnx"], "compare": ["a.onnx", "b.onnx"], "debug": ["a.onnx", "b.onnx"], "finetune": ["--teacher", "t", "--student", "s", "--data", "d", "-o", "o.onnx"]}[verb]
    args = _parse(verb, *required)
    assert {f.name for f in dataclasses.fields(cls)} - skipped <= set(vars(args))
    assert all(getattr(args, f.name) is None for f in dataclasses.fields(cls) if f.name not in skipped)
    assert config_from_args(args, cls) == cls()


def test_quantize_keeps_its_flag_names():
    from trtcompress.cli.common import config_from_args
    from trtcompress.stages.quantize import QuantizeConfig

    args = _parse("quantize", "m.onnx", "-o", "o.onnx", "--calib", "c/", "--per-tensor-weights", "--no-clip-bounds", "--no-refine-ranges",
                  "--no-center-inputs", "--include", "Conv_*", "--include", "re:a{1,2}", "--input", "x:1x3x8x8", "--target", "cpu",
                  "--sensitivity-samples", "0", "--eval-limit", "4", "--threads", "1", "--no-progress")
    assert config_from_args(args, QuantizeConfig) == QuantizeConfig(
        calib="c/", per_channel=False, clip_bounds=False, refine_ranges=False, center_inputs=False, include=("Conv_*", "re:a{1,2}"),
        inputs=("x:1x3x8x8",), target="cpu", sensitivity_samples=0, eval_limit=4, threads=1, progress=False)


def test_lowrank_input_and_seed_reach_the_config():
    from trtcompress.cli.common import config_from_args
    from trtcompress.lowrank import LowRankConfig

    args = _parse("lowrank", "m.onnx", "-o", "o.onnx", "--rule", "error", "--data", "random:4", "--input", "x:1x3x8x8", "--seed", "7", "--ops", "Conv,Gemm")
    assert config_from_args(args, LowRankConfig) == LowRankConfig(rule="error", calib="random:4", inputs=("x:1x3x8x8",), seed=7, ops=("Conv", "Gemm"))


def test_compress_flags_override_the_recipe_and_defaults_stay_in_the_dataclass(tmp_path):
    from trtcompress.cli.compress import build_config
    from trtcompress.job import CompressConfig

    assert build_config(_parse("compress", "m.onnx")) == CompressConfig(model="m.onnx")
    recipe = tmp_path / "r.json"
    recipe.write_text(json.dumps({"bench": {"batch_sizes": [1, 8]}, "compare": {"min_cosine": 0.9}, "runner": {"threads": 2}, "backend": "trt", "stages": [{"stage": "sparsify", "permute": True}]}))
    cfg = build_config(_parse("compress", "m.onnx", "--recipe", str(recipe), "--min-cosine", "0.99", "--iterations", "7", "--input", "x:1x3x8x8",
                              "--overwrite", "--no-bench", "--static", "--seed", "3", "--providers", "cpu"))
    assert cfg.bench.batch_sizes == (1, 8) and cfg.bench.iterations == 7 and cfg.bench.seed == 3  # recipe, flag, flag
    assert cfg.compare.min_cosine == 0.99 and cfg.runner.threads == 2
    assert cfg.export.inputs == ("x:1x3x8x8",) and cfg.export.dynamic_batch is False and cfg.export.seed == 3
    assert cfg.overwrite and cfg.skip_bench and cfg.stages[0].permute is True and cfg.backend == "trt"
