"""Defaults never make a model worse for nothing: a stage that changes nothing, or costs accuracy
for a negligible gain, says so in one line (stage report, report.json notes and the summary)."""
from __future__ import annotations

from pathlib import Path

import onnx

from trtc_support import cli
from trtcompress.job import CompressConfig, compress, stage_config
from trtcompress.stages.lowrank import LowRankConfig, lowrank
from trtcompress.zoo.models import onnx_path

FASHION = Path(__file__).resolve().parents[1] / "calibration"


def test_lowrank_that_factorises_nothing_says_so(tiny_model):
    r = lowrank(onnx.load(str(tiny_model)), LowRankConfig())
    assert r.report["factorised"] == 0 and len(r.report["notes"]) == 1 and "factorised no layer" in r.report["notes"][0]


def test_lowrank_with_a_negligible_gain_says_so():
    r = lowrank(onnx.load(str(onnx_path("fashion_cnn"))), LowRankConfig())  # default energy 0.95: 3.2% of the FLOPs
    assert r.report["factorised"] > 0 and "removed only" in r.report["notes"][0]


def test_quantize_that_leaves_the_model_slower_on_this_cpu_says_so(tmp_path):
    """The TensorRT form run by ONNX Runtime on a CPU (measured 0.45x at batch 1 on the Fashion CNN)."""
    stages = (stage_config("quantize", {"sensitivity_samples": 0}),)
    config = CompressConfig(model=str(onnx_path("fashion_cnn")), name="slow", runs_dir=str(tmp_path), stages=stages,
                            data=str(FASHION / "fashion_mnist_eval.npz"), calib=str(FASHION / "fashion_mnist"), limit=64)
    report = compress(config.replace(bench=config.bench.replace(iterations=30))).report
    speedup = report["bench"]["speedup_vs_first"]["1"]["compressed"]
    slower = [n for n in report["notes"] if "slower than the original" in n]
    assert (speedup < 1.0) == bool(slower)
    assert speedup < 0.9 and slower  # the measured gap is wide: this CPU form of Q/DQ is not a fast path
    assert slower[0] in report["stages"][-1]["report"]["notes"]


def test_notes_reach_the_summary(tmp_path):
    r = cli("compress", str(onnx_path("fashion_cnn")), "--stages", "lowrank", "--data", str(FASHION / "fashion_mnist_eval.npz"),
            "--limit", "16", "--no-bench", "--runs-dir", str(tmp_path), "--name", "lr")
    assert r.returncode == 0, r.stderr[-2000:]
    assert "note: lowrank: removed only" in r.stdout


def _mobile_block(path: Path) -> Path:
    """dense 3x3 conv -> ReLU -> depthwise 3x3 conv -> ReLU -> 1x1 conv to a float output."""
    import numpy as np
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    w = {"wd": rng.standard_normal((32, 16, 3, 3)) * 0.1, "wdw": rng.standard_normal((32, 1, 3, 3)) * 0.3, "wh": rng.standard_normal((8, 32, 1, 1)) * 0.2}
    nodes = [helper.make_node("Conv", ["x", "wd"], ["c"], name="dense", pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["c"], ["r"], name="relu"),
             helper.make_node("Conv", ["r", "wdw"], ["d"], name="depthwise", group=32, pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["d"], ["e"], name="relu2"),
             helper.make_node("Conv", ["e", "wh"], ["y"], name="head")]
    g = helper.make_graph(nodes, "block", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 16, 12, 12])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", 8, 12, 12])],
                          [numpy_helper.from_array(v.astype(np.float32), k) for k, v in w.items()])
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)]), str(path))
    np.savez(path.parent / "calib.npz", x=rng.standard_normal((16, 16, 12, 12)).astype(np.float32))
    return path


def test_a_slower_cpu_form_names_its_layers(tmp_path):
    """When the benchmark finds the CPU form slower than FP32, the note (report and summary) names
    the layers INT8 does not pay for on CPU: the depthwise convs in INT8, and the float layer between
    integer ones (auto rule) or the generic integer kernel with a float output (every layer INT8)."""
    from trtcompress.job import no_gain_notes, slow_cpu_layers

    src = _mobile_block(tmp_path / "block.onnx")
    named = {}
    for target, rule in (("cpu", "auto"), ("cpu", "all"), ("tensorrt", "auto")):
        out = tmp_path / f"{target}-{rule}.onnx"
        r = cli("quantize", str(src), "--calib", str(tmp_path / "calib.npz"), "--target", target, "--cpu-layer-rule", rule, "-o", str(out))
        assert r.returncode == 0, r.stderr[-2000:]
        named[target, rule] = {why.split(" (")[0]: names for why, names in slow_cpu_layers(out).items()}
    assert named["cpu", "auto"] == {"depthwise convs in INT8": ["depthwise"], "float layers between integer ones": ["head"]}
    assert named["cpu", "all"] == {"depthwise convs in INT8": ["depthwise"], "generic integer kernels with a float output": ["head"]}
    assert named["tensorrt", "auto"] == {}
    report = {"stages": [{"name": "quantize", "report": {}}], "bench": {"speedup_vs_first": {"1": {"original": 1.0, "compressed": 0.8}}},
              "metrics": {"compression": {"ratio_disk": 1.0}}, "compare": {"outputs": {}}}
    note = next(n for n in no_gain_notes(report, tmp_path / "cpu-auto.onnx") if "slower" in n)
    assert "depthwise convs in INT8" in note and "(depthwise)" in note and "(head)" in note
    assert note in report["stages"][-1]["report"]["notes"]
