"""compress --target-trt on a real model: what the run writes for TensorRT 8.6, and the refusals."""
from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
from onnx import version_converter

from trtcompress._optional import available
from trtcompress.lowrank import LowRankConfig
from trtcompress.lowrank.ranks import Candidate, choose_ranks
from trtcompress.lowrank.svd import Spectrum
from trtcompress.model_io import load_model
from trtcompress.quant.trt_rules import trt_qdq_violations
from trtcompress.stages.quantize import QuantizeConfig
from trtcompress.trt.opset import default_opset
from trtcompress.trt.target import adapt_stages

from trtc_support import cli

zoo = pytest.importorskip("trtcompress.zoo")


def _spectrum_rank(out_dim: int, in_dim: int, rank: int) -> Candidate:
    """A matrix of exactly ``rank`` equal singular values: energy 0.95 needs ``rank`` of them."""
    rng = np.random.default_rng(0)
    u, _ = np.linalg.qr(rng.standard_normal((out_dim, rank)))
    v, _ = np.linalg.qr(rng.standard_normal((in_dim, rank)))
    return Candidate("m", "MatMul", out_dim, in_dim, 1, Spectrum(u @ v.T, "exact"))


@pytest.mark.parametrize("rank", [50, 79, 9])
@pytest.mark.parametrize("int8, multiple", [(True, 16), (False, 8)])
def test_ranks_that_came_out_odd_are_rounded_to_tensor_core_multiples(rank, int8, multiple):
    lr = LowRankConfig(energy=0.999)  # keeps all ``rank`` equal singular values
    stages = (lr, QuantizeConfig()) if int8 else (lr,)
    cfg = adapt_stages(stages, "10.3")[0][0]
    before = choose_ranks([_spectrum_rank(200, 200, rank)], lr)[0].rank
    assert before == rank  # the odd rank the energy rule gives without a target
    (choice,) = choose_ranks([_spectrum_rank(200, 200, rank)], cfg)
    assert choice.rank == -(-before // multiple) * multiple
    assert choice.rank % 4 == 0  # whole 2:4 groups along the second factor's reduction dimension


def test_a_rank_rounded_past_the_break_even_stays_dense():
    """40 x 40: break-even rank 19; energy needs 18, which rounds to 32 > 19: left dense, with the reason."""
    lr = LowRankConfig(energy=0.999)
    (cfg,), _ = adapt_stages((lr,), "8.6")
    (choice,) = choose_ranks([_spectrum_rank(40, 40, 18)], cfg)
    assert choose_ranks([_spectrum_rank(40, 40, 18)], lr)[0].rank == 18
    assert choice.rank is None and "above 16" in choice.reason


@pytest.fixture(scope="module")
def run_86(tmp_path_factory):
    """The Fashion CNN as an opset 18 ONNX, through lowrank and quantize for TensorRT 8.6 with a cache."""
    tmp = tmp_path_factory.mktemp("target")
    onnx.save(version_converter.convert_version(onnx.load(zoo.onnx_path("fashion_cnn")), 18), tmp / "cnn18.onnx")
    x, _ = zoo.fashion_mnist("train", limit=128)
    np.savez(tmp / "cal.npz", x=x)
    xe, _ = zoo.fashion_mnist("test", limit=64)
    np.savez(tmp / "eval.npz", x=xe)
    proc = cli("compress", str(tmp / "cnn18.onnx"), "--stages", "lowrank,quantize", "--calib", str(tmp / "cal.npz"), "--data", str(tmp / "eval.npz"),
               "--target-trt", "8.6", "--calibration-cache", "--no-bench", "--runs-dir", str(tmp / "runs"), "--name", "r")
    return tmp, proc


def test_the_run_writes_what_tensorrt_86_takes(run_86):
    tmp, proc = run_86
    assert proc.returncode == 0, proc.stderr
    run = tmp / "runs" / "r"
    report = json.loads((run / "report.json").read_text())
    t = report["tensorrt"]
    assert t["version"] == "8.6.0" and "converted from opset 18 to 17" in t["opset"]
    for name in ("original.onnx", "model.onnx"):
        assert default_opset(load_model(run / "artifacts" / name)) == 17, name
    model = load_model(run / "artifacts" / "model.onnx")
    assert trt_qdq_violations(model) == []
    assert not any(n.op_type == "ReduceMean" and len(n.input) > 1 for n in model.graph.node)
    lowrank = report["stages"][-2]["report"]
    assert lowrank["layers"] and all(layer["rank"] % 16 == 0 for layer in lowrank["layers"])
    cache = next((run / "artifacts").glob("*-quantize-calibration.cache")).read_text()
    assert cache.startswith("TRT-8600-EntropyCalibration2")
    q = report["stages"][-1]["config"]
    assert q["target_trt"] == "8.6.0" and q["trt_version"] == "8.6.0"
    if not available("tensorrt"):
        engine = t["engine"]
        assert not engine["built"] and "TensorRT is not installed" in engine["why"]
        # the plan for 8.6 and the trtexec line to run on the target: INT8 flag for a Q/DQ model
        assert engine["plan"]["int8"] and not engine["plan"]["strongly_typed"]
        assert "--int8" in engine["trtexec"] and "--onnx=artifacts/model.onnx" in engine["trtexec"]
        assert "engine not built: TensorRT is not installed" in proc.stdout
    assert report["compare"]["outputs"]["logits"]["top1_agreement"] >= 0.9


@pytest.mark.parametrize("args, message", [
    (["--target-trt", "11.0", "--calibration-cache"], "no implicit INT8"),
    (["--calibration-cache"], "give --target-trt"),
    (["--target-trt", "8.6", "--opset", "18"], "--opset 18 is newer than TensorRT 8.6 parses"),
    (["--target-trt", "7.1"], "not supported"),
])
def test_refusals_are_one_line(tmp_path, capsys, args, message):
    from trtcompress.cli.main import main

    code = main(["compress", str(zoo.onnx_path("fashion_cnn")), "--stages", "quantize", "--no-bench", "--runs-dir", str(tmp_path), *args])
    err = capsys.readouterr().err
    assert code == 2 and message in err and "Traceback" not in err, err
    assert len(err.strip().splitlines()) == 1 and not list(tmp_path.iterdir())
