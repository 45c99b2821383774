from __future__ import annotations

from trtcompress.job import CompressConfig, _with_shared_data, stage_config


def test_stages_take_the_jobs_calibration_data():
    from trtcompress.stages.quantize import QuantizeConfig

    cfg = CompressConfig(model="m.onnx", data="photos:eval", calib="photos:calib", preprocess="efficientnet-lite")
    q = _with_shared_data(QuantizeConfig(), cfg)
    assert q.calib == "photos:calib" and q.preprocess == "efficientnet-lite"
    own = _with_shared_data(QuantizeConfig(calib="mine/"), cfg)
    assert own.calib == "mine/"
    # the evaluation data is never the calibration data unless the user says so
    assert _with_shared_data(QuantizeConfig(), CompressConfig(model="m.onnx", data="d/")).calib == ""
    assert _with_shared_data(QuantizeConfig(), CompressConfig(model="m.onnx", data="d/", calib_from_data="same")).calib == "d/"
    # the default random comparison inputs are never used for calibration implicitly
    assert _with_shared_data(QuantizeConfig(), CompressConfig(model="m.onnx")).calib == ""
    assert _with_shared_data(QuantizeConfig(), CompressConfig(model="m.onnx", calib="random:4")).calib == "random:4"


def _seq_model(path):
    """x [N, T, 8] -> MatMul -> Relu -> mean over T: a dynamic dimension other than the batch."""
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    w = numpy_helper.from_array(np.random.default_rng(0).standard_normal((8, 16)).astype(np.float32), "w")
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["h"]), helper.make_node("Relu", ["h"], ["r"]),
         helper.make_node("ReduceMean", ["r"], ["y"], axes=[1], keepdims=0)],
        "seq", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", "T", 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 16])], [w])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]), str(path))
    return path


def test_input_shapes_reach_compare_and_bench(tmp_path):
    from trtcompress.benchmark import BenchConfig
    from trtcompress.job import compress
    from trtcompress.torch_export import ExportConfig

    model = _seq_model(tmp_path / "seq.onnx")
    cfg = CompressConfig(model=str(model), runs_dir=str(tmp_path / "runs"), name="seq", data="random:2",
                         export=ExportConfig(inputs=("x:1x5x8",)), bench=BenchConfig(batch_sizes=(1, 2), iterations=5, rounds=1))
    result = compress(cfg)
    assert result.report["status"] == "completed" and result.report["compare"]["samples"] == 2
    assert set(result.report["bench"]["results"]) == {"1", "2"}


def test_report_paths_point_at_the_run_directory(tiny_model, tmp_path):
    import json

    from trtcompress.benchmark import BenchConfig
    from trtcompress.job import compress

    cfg = CompressConfig(model=str(tiny_model), runs_dir=str(tmp_path / "runs"), name="p", data="random:2", bench=BenchConfig(iterations=5, rounds=1))
    result = compress(cfg)
    written = (result.run_dir / "report.json").read_text()
    assert "/.p." not in written  # the temporary directory's name
    report = json.loads(written)
    assert report["compare"]["base"] == str(result.run_dir / "artifacts" / "original.onnx")
    assert report["compare"]["candidate"] == str(result.model_path)
    assert all(str(result.run_dir) in m for m in report["bench"]["models"])
    assert result.report == report


def test_a_run_that_fails_late_keeps_what_finished(tmp_path):
    import json

    import pytest

    from trtc_support import tiny_classifier
    from trtcompress.benchmark import BenchConfig
    from trtcompress.errors import ConfigError
    from trtcompress.job import compress

    fixed = tiny_classifier(tmp_path / "fixed.onnx", dynamic=False)  # batch 1 only: bench at 2 fails
    cfg = CompressConfig(model=str(fixed), runs_dir=str(tmp_path / "runs"), name="late", data="random:2",
                         stages=(stage_config("sparsify", {"min_channels": 4}),), bench=BenchConfig(batch_sizes=(2,), iterations=5, rounds=1))
    with pytest.raises(ConfigError, match="fixed batch size"):
        compress(cfg)
    run = tmp_path / "runs" / "late"
    report = json.loads((run / "report.json").read_text())
    assert report["status"] == "failed"
    assert report["failure"]["stage"] == "bench" and "fixed batch size" in report["failure"]["message"]
    assert report["compare"]["samples"] == 2 and [s["name"] for s in report["stages"]] == ["normalize", "sparsify"]
    assert (run / "artifacts" / "original.onnx").is_file() and (run / "artifacts" / "model.onnx").is_file()
    assert sorted(p.name for p in (tmp_path / "runs").iterdir()) == [".cache", "late"]  # no temporary directory left (the stage cache stays)


def test_a_run_that_fails_in_a_stage_names_it_and_keeps_earlier_stages(tiny_model, tmp_path):
    import json

    import pytest

    from trtcompress.errors import StageError
    from trtcompress.job import compress

    # quantize on a calibration folder that does not exist fails after sparsify finished
    cfg = CompressConfig(model=str(tiny_model), runs_dir=str(tmp_path / "runs"), name="st", data="random:2", skip_bench=True,
                         stages=(stage_config("sparsify", {"min_channels": 4}), stage_config("quantize", {"calib": str(tmp_path / "none")})))
    with pytest.raises(StageError):
        compress(cfg)
    report = json.loads((tmp_path / "runs" / "st" / "report.json").read_text())
    assert report["failure"]["stage"] == "quantize"
    assert [s["name"] for s in report["stages"]] == ["normalize", "sparsify"]


def test_a_run_that_fails_before_the_baseline_leaves_nothing(tmp_path):
    import pytest

    from trtcompress.errors import UserError
    from trtcompress.job import compress

    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"not a model")
    with pytest.raises(UserError):
        compress(CompressConfig(model=str(bad), runs_dir=str(tmp_path / "runs"), name="b"))
    assert list((tmp_path / "runs").iterdir()) == []
