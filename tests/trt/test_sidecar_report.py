"""Engine sidecar checks, and the parsers of the engine inspector JSON and TensorRT's sparsity log."""
from __future__ import annotations

import hashlib
import json
import logging

import pytest

from trtcompress.errors import ModelError
from trtcompress.fileio import write_json
from trtcompress.trt.report import engine_report, layer_precision, parse_inspector, parse_sparsity_log, precision_warnings
from trtcompress.trt.sidecar import GpuInfo, check_sidecar, file_sha256, input_source, make_sidecar, sidecar_path

ORIN = GpuInfo("Orin", "8.7")
A100 = GpuInfo("NVIDIA A100-SXM4-80GB", "8.0")


def _engine(tmp_path, version="10.3.0", gpu=ORIN, **options):
    onnx_path = tmp_path / "m.onnx"
    onnx_path.write_bytes(b"onnx bytes")
    engine = tmp_path / "m.engine"
    engine.write_bytes(b"engine")
    plan = {"precisions": ["fp32", "int8"], "profiles": [], "version_compatible": False, "hardware_compatibility": "none", "plugins": [], **options}
    write_json(sidecar_path(engine), make_sidecar(plan, version, gpu, onnx_path, file_sha256(onnx_path)))
    return engine


def test_sidecar_records_what_was_built(tmp_path):
    engine = _engine(tmp_path)
    data = json.loads(sidecar_path(engine).read_text())
    assert sidecar_path(engine).name == "m.engine.json"
    assert data["tensorrt_version"] == "10.3.0" and data["gpu"] == {"name": "Orin", "compute_capability": "8.7"}
    assert data["source_onnx"]["sha256"] == hashlib.sha256(b"onnx bytes").hexdigest()
    assert data["precisions"] == ["fp32", "int8"]
    assert check_sidecar(engine, "10.3.0", ORIN)["tensorrt_version"] == "10.3.0"
    assert input_source(engine) == tmp_path / "m.onnx"


def test_other_tensorrt_or_gpu_is_refused_in_one_line(tmp_path):
    engine = _engine(tmp_path)
    with pytest.raises(ModelError, match=r"built with TensorRT 10.3.0, this is TensorRT 10.3.1; rebuild") as e:
        check_sidecar(engine, "10.3.1", ORIN)
    assert "\n" not in str(e.value)
    with pytest.raises(ModelError, match=r"built for Orin \(compute capability 8.7\), this GPU is NVIDIA A100"):
        check_sidecar(engine, "10.3.0", A100)


def test_compatible_engines_are_allowed_where_they_run(tmp_path):
    vc = _engine(tmp_path, version="10.3.0", version_compatible=True)
    assert check_sidecar(vc, "10.13.0", ORIN) is not None
    with pytest.raises(ModelError):
        check_sidecar(vc, "10.2.0", ORIN)  # older than the builder
    with pytest.raises(ModelError):
        check_sidecar(vc, "11.0.0", ORIN)  # another major
    hw = _engine(tmp_path, gpu=A100, hardware_compatibility="ampere+")
    assert check_sidecar(hw, "10.3.0", ORIN) is not None
    with pytest.raises(ModelError):
        check_sidecar(hw, "10.3.0", GpuInfo("Tesla T4", "7.5"))


def test_missing_sidecar_warns_and_lets_tensorrt_try(tmp_path, caplog):
    engine = tmp_path / "lonely.engine"
    engine.write_bytes(b"x")
    with caplog.at_level(logging.WARNING):
        assert check_sidecar(engine, "10.3.0", ORIN) is None
    assert "no sidecar" in caplog.text
    with pytest.raises(ModelError, match="sidecar"):
        input_source(engine)


def test_a_broken_sidecar_is_a_one_line_error(tmp_path):
    engine = _engine(tmp_path)
    sidecar_path(engine).write_text("{not json")
    with pytest.raises(ModelError, match="not a readable engine sidecar"):
        check_sidecar(engine, "10.3.0", ORIN)


# what IEngineInspector.get_engine_information(LayerInformationFormat.JSON) returns with DETAILED verbosity
INSPECTOR = {
    "Layers": [
        {"Name": "Reformatting CopyNode for Input Tensor 0 to conv1", "LayerType": "Reformat",
         "Inputs": [{"Name": "x", "Dimensions": [8, 3, 16, 16], "Format/Datatype": "Row major linear FP32"}],
         "Outputs": [{"Name": "x_r", "Dimensions": [8, 3, 16, 16], "Format/Datatype": "Channel major FP16 format where channel % 8 == 0"}],
         "TacticValue": "0x0000000000000000"},
        {"Name": "conv1 + relu1", "LayerType": "CaskConvolution",
         "Inputs": [{"Name": "x_r", "Format/Datatype": "Channel major FP16 format where channel % 8 == 0"}],
         "Outputs": [{"Name": "r1", "Format/Datatype": "Thirty-two wide channel vectorized row major Int8 format"}],
         "TacticName": "sm80_xmma_fprop_implicit_gemm_f16f16_f16f16_f16_nhwckrsc_nhwc", "TacticValue": "0x1a2b"},
        {"Name": "conv2 + relu2", "LayerType": "CaskConvolution",
         "Inputs": [{"Name": "r1", "Format/Datatype": "Thirty-two wide channel vectorized row major Int8 format"}],
         "Outputs": [{"Name": "r2", "Format/Datatype": "Row major linear FP32"}],
         "TacticName": "sm80_xmma_fprop_sparse_conv_interleaved_i8i8_i8i32_f32", "TacticValue": "0x3c4d"},
        {"Name": "fc", "LayerType": "gemm", "Inputs": [{"Name": "f", "Format/Datatype": "Float"}], "Outputs": [{"Name": "logits", "Format/Datatype": "Float"}], "TacticName": "gemm_f32"},
    ],
    "Bindings": ["x", "logits"],
}
LOG = """[12/03/2026-12:00:00] [I] [TRT] Total Activation Memory: 1234
[12/03/2026-12:00:01] [I] [TRT] (Sparsity) Layers eligible for sparse math: conv2 + relu2, fc
[12/03/2026-12:00:01] [I] [TRT] (Sparsity) TRT inference plan picked sparse implementation for layers: conv2 + relu2
[12/03/2026-12:00:02] [I] [TRT] Engine built in 3.2 seconds."""


def test_inspector_gives_precision_and_tactic_per_layer():
    rows = parse_inspector(json.dumps(INSPECTOR))
    assert [(r["name"], r["precision"]) for r in rows] == [
        ("Reformatting CopyNode for Input Tensor 0 to conv1", "fp32"), ("conv1 + relu1", "fp16"), ("conv2 + relu2", "int8"), ("fc", "fp32")]
    assert rows[2]["tactic"] == "sm80_xmma_fprop_sparse_conv_interleaved_i8i8_i8i32_f32"
    assert layer_precision({"Inputs": [{"Format/Datatype": "Half"}]}) == "fp16"
    assert parse_inspector({"Layers": ["a", "b"]})[0] == {"name": "a", "type": None, "precision": None, "tactic": None}


def test_sparsity_log_lines_are_parsed_with_layer_names_holding_spaces():
    assert parse_sparsity_log(LOG.splitlines()) == {"eligible": ["conv2 + relu2", "fc"], "picked": ["conv2 + relu2"]}
    assert parse_sparsity_log(["nothing here"]) == {"eligible": [], "picked": []}


def test_loud_warning_when_a_requested_precision_is_not_used():
    fp32_only = parse_inspector({"Layers": [INSPECTOR["Layers"][3]]})
    (w,) = precision_warnings(["fp32", "int8"], fp32_only)
    assert w.startswith("INT8 was requested but NO layer")
    assert precision_warnings(["fp32", "fp16", "int8"], parse_inspector(INSPECTOR)) == []
    dense = precision_warnings(["fp32", "int8"], parse_inspector(INSPECTOR), True, {"eligible": ["conv2"], "picked": []})
    assert any("picked dense kernels" in w for w in dense)
    report = engine_report(INSPECTOR, LOG.splitlines(), ["fp32", "int8"], True)
    assert report["precision_counts"] == {"fp32": 2, "fp16": 1, "int8": 1} and report["warnings"] == []


def test_builder_log_capture_keeps_tensorrt_info_lines_off_stdout(capsys):
    from polygraphy.logger import G_LOGGER

    from trtcompress.trt.build import _captured_trt_log

    with _captured_trt_log() as lines:
        # what Polygraphy's TensorRT logger does with TensorRT's INFO and ERROR messages
        G_LOGGER.verbose("(Sparsity) Layers eligible for sparse math: conv2")
        G_LOGGER.verbose("(Sparsity) TRT inference plan picked sparse implementation for layers: conv2")
        G_LOGGER.error("some error")
    assert capsys.readouterr().out == ""
    assert parse_sparsity_log(lines) == {"eligible": ["conv2"], "picked": ["conv2"]}
    assert any(l.startswith("[E] some error") for l in lines)
    assert G_LOGGER.log_file is None


def test_a_failed_build_names_tensorrts_first_error():
    from polygraphy.logger import G_LOGGER

    from trtcompress.trt.build import run_with_trt_log

    def failing_build():
        G_LOGGER.error("ModelImporter.cpp:949: While parsing node number 3 [Conv]: Could not find any implementation for node conv2")
        G_LOGGER.critical("Could not parse ONNX correctly")  # raises, as Polygraphy does

    with pytest.raises(ModelError, match=r"^TensorRT 10.3.0 could not build m.onnx: ModelImporter.cpp:949: .*Could not find any implementation for node conv2$"):
        run_with_trt_log(failing_build, "TensorRT 10.3.0 could not build m.onnx")
    assert run_with_trt_log(lambda: 42, "x")[0] == 42


def test_a_users_polygraphy_log_file_is_kept_whole(tmp_path):
    from polygraphy.logger import G_LOGGER

    from trtcompress.trt.build import _captured_trt_log

    log = tmp_path / "user.log"
    G_LOGGER.log_file = str(log)
    try:
        G_LOGGER.warning("before the build")
        with _captured_trt_log() as lines:
            G_LOGGER.verbose("(Sparsity) Layers eligible for sparse math: conv2")
        assert parse_sparsity_log(lines)["eligible"] == ["conv2"] and not any("before the build" in l for l in lines)
        assert G_LOGGER.log_file == str(log)
    finally:
        G_LOGGER.log_file = None
    text = log.read_text()
    assert "before the build" in text and "Layers eligible for sparse math" in text
