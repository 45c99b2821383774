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
    out = json.loads(r.stdout)
    assert out["exporter"] in ("dynamo", "torchscript") and out["check"]["random"]["max_abs"] < 1e-5
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
