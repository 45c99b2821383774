"""``trtcompress build --dry-run`` without TensorRT, and the one-line errors of TensorRT verbs without it."""
from __future__ import annotations

import json

import numpy as np
import onnxruntime as ort
import pytest

from trt_graphs import conv_net
from trtcompress._optional import available
from trtcompress.cli.main import main

no_trt = pytest.mark.skipif(available("tensorrt"), reason="checks the behaviour without TensorRT")


def test_dry_run_shows_every_version(tmp_path, capsys):
    model = tmp_path / "m.onnx"
    conv_net(model, qdq=True, sparse=True)
    assert main(["build", str(model), "-o", str(tmp_path / "m.engine"), "--dry-run", "--workspace-mib", "512"]) == 0
    out = capsys.readouterr().out
    assert [l for l in out.splitlines() if l.startswith("== ")] == ["== TensorRT 8.6.1", "== TensorRT 10.3.0", "== TensorRT 10.13.0", "== TensorRT 11.0.0"]
    assert "weakly typed; flags: int8, sparse_weights" in out
    assert "strongly typed; flags: strongly_typed, sparse_weights" in out
    assert f"trtexec --onnx={model} --saveEngine={tmp_path / 'm.engine'} --int8 --sparsity=enable --minShapes=x:1x3x16x16" in out
    assert "--stronglyTyped --sparsity=enable" in out
    assert "IBuilderConfig.set_memory_pool_limit(MemoryPoolType.WORKSPACE, 536870912)" in out
    assert "2:4 layers: 1 (conv2)" in out


def test_dry_run_json_for_one_version_and_fp16_onnx(tmp_path, capsys):
    model = tmp_path / "m.onnx"
    conv_net(model)
    assert main(["build", str(model), "--dry-run", "--json", "--fp16", "--target-version", "11.0", "--shapes", "x:1x3x16x16,x:2x3x16x16,x:4x3x16x16"]) == 0
    (result,) = json.loads(capsys.readouterr().out)
    assert result["plan"]["convert_fp16"] and result["plan"]["profiles"] == [{"x": {"min": [1, 3, 16, 16], "opt": [2, 3, 16, 16], "max": [4, 3, 16, 16]}}]
    assert result["polygraphy"]["NetworkFromOnnxPath"] == {"strongly_typed": True}
    assert "int8" not in result["polygraphy"]["CreateConfig"]
    fp16 = result["fp16_onnx"]
    assert fp16 == str(tmp_path / "m.fp16.onnx") and f"--onnx={fp16}" in result["trtexec"]
    x = np.random.default_rng(0).standard_normal((2, 3, 16, 16)).astype(np.float32)
    ref, got = (ort.InferenceSession(p, providers=["CPUExecutionProvider"]).run(None, {"x": x})[0] for p in (str(model), fp16))
    assert np.abs(ref - got).max() < 1e-2 * max(1.0, np.abs(ref).max())


def test_bad_options_are_one_line_errors(tmp_path, capsys):
    model = tmp_path / "m.onnx"
    conv_net(model)
    assert main(["build", str(model), "--dry-run", "--target-version", "11.0", "--weak-typing"]) == 2
    assert "no weak typing" in capsys.readouterr().err
    assert main(["build", str(model), "--dry-run", "--plugin", str(tmp_path / "missing.so")]) == 2
    assert "plugin" in capsys.readouterr().err
    assert main(["build", str(model), "--dry-run", "--shapes", "x:1x3x16x16,x:8x3x16x16"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "appears 2 times" in err


@no_trt
@pytest.mark.parametrize("argv", [
    ["build", "{m}", "-o", "{d}/m.engine"],
    ["bench", "{m}", "--backend", "trt"],
    ["compare", "{m}", "{m}", "--backend", "trt"],
    ["bench", "{d}/m.engine"],  # an engine runs on TensorRT whatever --backend says
    ["compare", "{m}", "{d}/m.engine"],
])
def test_tensorrt_verbs_fail_fast_naming_the_extra(argv, tmp_path, capsys):
    model = tmp_path / "m.onnx"
    conv_net(model)
    (tmp_path / "m.engine").write_bytes(b"an engine from elsewhere")
    code = main([a.format(m=model, d=tmp_path) for a in argv])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1
    assert "pip install 'trtcompress[trt]'" in err


def test_every_build_config_field_is_a_flag():
    import dataclasses

    from trtcompress.cli.build import config_from_args
    from trtcompress.cli.main import build_parser
    from trtcompress.trt.config import BuildConfig

    args = build_parser("build").parse_args([
        "build", "m.onnx", "--target-version", "10.3", "--fp16", "--sparse", "off", "--shapes", "x:1x3,x:2x3,x:4x3", "--shapes", "x:8x3",
        "--opt-batch", "4", "--max-batch", "16", "--workspace-mib", "64", "--builder-optimization-level", "2", "--timing-cache", "t.cache",
        "--dla-core", "1", "--no-gpu-fallback", "--weak-typing", "--plugin", "a.so", "--plugin", "b.py",
    ])
    config = config_from_args(args)
    assert config == BuildConfig(target_version="10.3", fp16=True, sparse="off", shapes=("x:1x3,x:2x3,x:4x3", "x:8x3"), opt_batch=4, max_batch=16,
                                 workspace_mib=64, builder_optimization_level=2, timing_cache="t.cache", dla_core=1, gpu_fallback=False,
                                 weak_typing=True, plugins=("a.so", "b.py"))
    assert config_from_args(build_parser("build").parse_args(["build", "m.onnx"])) == BuildConfig()
    flags = {a.dest for a in build_parser("build")._subparsers._group_actions[0].choices["build"]._actions}
    assert {f.name for f in dataclasses.fields(BuildConfig)} <= flags
