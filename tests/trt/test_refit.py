"""Weight-stripped engines refitted from a packed artifact (issue 17, item 3).

Everything up to the TensorRT call runs here: the builder flags Polygraphy gets, the weights the
refit hands TensorRT (equal, name by name and bit for bit, to the shared model's decoded weights),
and the refusals made before TensorRT is touched. The last test builds, strips, refits and runs
engines where TensorRT and a GPU exist.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest

from trtc_support import tiny_classifier
from trtcompress._optional import available
from trtcompress.cli.main import main
from trtcompress.errors import ConfigError, MissingDependencyError, ModelError
from trtcompress.share import ShareConfig
from trtcompress.share.decode import decode_shared
from trtcompress.share.onnx_share import share_onnx
from trtcompress.share.pack import ArtifactError, pack_file
from trtcompress.share.read import read_shared
from trtcompress.trt.build import parsed_model, plan_build
from trtcompress.trt.config import BuildConfig
from trtcompress.trt.loaders import build_loaders, enum_settings
from trtcompress.trt.refit import prepare_refit, refit_engine
from trtcompress.trt.sidecar import GpuInfo, file_sha256, make_sidecar, sidecar_path
from trtcompress.trt.trtexec import trtexec_args
from trtcompress.trt.weights import engine_weights_model, read_weights_source, refit_record, weight_map
from trtcompress.zoo.models import onnx_path


def _shared(path: Path, bits: int) -> Path:
    model, _ = share_onnx(onnx.load(onnx_path("fashion_cnn")), ShareConfig(bits=bits, prune=0.5))
    onnx.save(model, path)
    return path


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("refit")
    shared = _shared(d / "shared4.onnx", 4)
    other = _shared(d / "shared3.onnx", 3)  # same layers and shapes, other values
    pack_file(shared, d / "shared4.pack")
    pack_file(other, d / "shared3.pack")
    pack_file(tiny_classifier(d / "tiny.onnx"), d / "tiny.pack")
    return d


def _stripped_sidecar(files: Path, name: str, config: BuildConfig) -> Path:
    """The sidecar ``build_engine`` writes for a stripped build of shared4.onnx on TensorRT 10.3,
    made by the same functions. The plan's bytes are never read before the TensorRT call, so the
    engine file here holds none."""
    onnx_file = files / "shared4.onnx"
    plan = plan_build(onnx_file, config, "10.3")
    engine = files / f"{name}.engine"
    engine.write_bytes(b"")
    side = make_sidecar(plan.to_dict(), "10.3.0", GpuInfo("NVIDIA Jetson AGX Orin", "8.7"), onnx_file, file_sha256(onnx_file))
    if plan.refit != "off":
        side["refit"] = refit_record(parsed_model(plan, onnx.load(onnx_file)), plan.refit, plan.strip_weights, plan.convert_fp16)
    sidecar_path(engine).write_text(json.dumps(side))
    return engine


def _create_config(loaders):
    config = loaders.config
    return getattr(config, "_config", config)  # PostprocessConfig wraps CreateConfig when an enum setting is needed


@pytest.mark.parametrize("options, strip, refittable, identical", [
    ({"strip_weights": True}, True, False, True),  # STRIP_PLAN + REFIT_IDENTICAL, trtexec --stripWeights
    ({"strip_weights": True, "refit": "any"}, True, True, False),  # STRIP_PLAN + REFIT
    ({"refit": "any"}, False, True, False),  # a full refittable engine
    ({}, False, False, False),
])
def test_polygraphy_create_config_carries_the_strip_and_refit_flags(files, options, strip, refittable, identical):
    plan = plan_build(files / "shared4.onnx", BuildConfig(**options), "10.3")
    create = _create_config(build_loaders(plan, str(files / "shared4.onnx")))
    assert (bool(create.strip_plan), bool(create.refittable)) == (strip, refittable)
    assert (("set_flag", "BuilderFlag", "REFIT_IDENTICAL", None) in enum_settings(plan)) == identical
    args = trtexec_args(plan, "m.onnx", "m.engine")
    assert ("--stripWeights" in args, "--refit" in args) == (strip, refittable)


def test_strip_and_refit_options_are_checked():
    with pytest.raises(ConfigError, match="TensorRT 8.6.1 has no weight-stripped"):
        plan_build(onnx_path("fashion_cnn"), BuildConfig(strip_weights=True), "8.6.1")
    with pytest.raises(ConfigError, match="add --strip-weights"):
        BuildConfig(refit="identical")
    with pytest.raises(ConfigError, match="drop --refit off"):
        BuildConfig(strip_weights=True, refit="off")
    with pytest.raises(ConfigError, match="refit must be one of off, identical, any"):
        BuildConfig(refit="yes")


def test_dry_run_shows_the_flags_per_version(files, capsys):
    assert main(["build", str(files / "shared4.onnx"), "--dry-run", "--strip-weights", "--json"]) == 0
    plans = {r["tensorrt"]: r for r in json.loads(capsys.readouterr().out)}
    assert "no weight-stripped" in plans["8.6.1"]["error"]
    for v in ("10.3.0", "10.13.0", "11.0.0"):
        assert plans[v]["polygraphy"]["CreateConfig"]["strip_plan"] is True
        assert plans[v]["polygraphy"]["builder_config_at_build_time"] == ["set_flag(BuilderFlag.REFIT_IDENTICAL)"]
        assert f"--onnx={files / 'shared4.refit.onnx'}" in plans[v]["trtexec"] and "--stripWeights" in plans[v]["trtexec"]
    # trtexec gets the dense form the sidecar's digest describes: plain initializers, no decode chains
    assert plans["10.3.0"]["refit_onnx"] == str(files / "shared4.refit.onnx")
    dense = onnx.load(files / "shared4.refit.onnx")
    assert not {n.op_type for n in dense.graph.node} & {"Gather", "GatherElements", "Cast"}
    assert weight_map(dense).keys() == weight_map(onnx.load(onnx_path("fashion_cnn"))).keys()


def test_weights_from_the_artifact_are_the_shared_models_decoded_weights(files):
    shared = onnx.load(files / "shared4.onnx")
    model, kind = read_weights_source(files / "shared4.pack")
    assert kind == "artifact" and model.SerializeToString() == shared.SerializeToString()
    weights = weight_map(engine_weights_model(model))
    dense = {t.name: t for t in decode_shared(shared)[0].graph.initializer}
    assert set(weights) == set(dense)
    for name, array in weights.items():
        assert array.tobytes() == onnx.numpy_helper.to_array(dense[name]).tobytes(), name
    layers = read_shared(shared)
    assert len(layers) == 7
    for layer in layers:  # book[idx] * scale, computed here independently of the graph folding
        expected = layer.decoded().T if layer.transposed else layer.decoded()
        assert np.array_equal(weights[layer.weight_name].view(np.uint32), expected.reshape(layer.onnx_shape).view(np.uint32)), layer.weight_name
    # the dense form keeps the FP32 model's weight names and shapes: the names TensorRT's parser gives
    fp32 = weight_map(onnx.load(onnx_path("fashion_cnn")))
    assert {n: a.shape for n, a in weights.items()} == {n: a.shape for n, a in fp32.items()}


def test_the_build_models_artifact_passes_the_checks(files):
    engine = _stripped_sidecar(files, "ok", BuildConfig(strip_weights=True))
    inputs = prepare_refit(engine, files / "shared4.pack")
    assert inputs.source_kind == "artifact" and inputs.digest == json.loads(sidecar_path(engine).read_text())["refit"]["weights"]
    assert prepare_refit(engine, files / "shared4.onnx").digest == inputs.digest  # the ONNX itself works too


def test_an_fp16_build_is_refitted_with_the_float16_weights_it_parsed(files):
    engine = _stripped_sidecar(files, "fp16", BuildConfig(strip_weights=True, fp16=True))
    record = json.loads(sidecar_path(engine).read_text())["refit"]
    assert record["form"] == "decoded dense float16" and record["shapes"]["head.1.weight"] == "float16 128x3136"
    assert all(v.startswith("float16 ") for v in record["shapes"].values())
    assert prepare_refit(engine, files / "shared4.pack").digest == record["weights"]


def test_another_models_artifact_is_refused_before_tensorrt(files):
    engine = _stripped_sidecar(files, "other", BuildConfig(strip_weights=True))
    with pytest.raises(ModelError, match=r"tiny.pack does not hold the weights other.engine was built from \(4 weights against 16; "
                                         r"missing: features.0.0.bias, features.0.0.weight, features.2.a.0.bias, features.2.a.0.weight and 12 more; not in the engine: "):
        prepare_refit(engine, files / "tiny.pack")


def test_other_values_need_a_refit_any_engine(files):
    identical = _stripped_sidecar(files, "identical", BuildConfig(strip_weights=True))
    with pytest.raises(ModelError, match="built with REFIT_IDENTICAL and .*shared3.pack holds other weight values"):
        prepare_refit(identical, files / "shared3.pack")
    anyw = _stripped_sidecar(files, "any", BuildConfig(strip_weights=True, refit="any"))
    assert prepare_refit(anyw, files / "shared3.pack").source_kind == "artifact"


def test_an_engine_not_built_refittable_is_refused(files, tmp_path):
    engine = _stripped_sidecar(files, "plain", BuildConfig())
    assert "refit" not in json.loads(sidecar_path(engine).read_text())  # as build_engine writes it
    with pytest.raises(ModelError, match="plain.engine was not built refittable; rebuild it with 'trtcompress build --strip-weights'"):
        prepare_refit(engine, files / "shared4.pack")
    again = _stripped_sidecar(files, "again", BuildConfig(strip_weights=True))
    side = json.loads(sidecar_path(again).read_text())
    side["refit"].update(stripped=False, refitted=True, refitted_from={"path": "update.pack"})
    sidecar_path(again).write_text(json.dumps(side))
    with pytest.raises(ModelError, match=r"again.engine is an already refitted engine \(from update.pack\), not refittable again: refit the stripped plan"):
        prepare_refit(again, files / "shared4.pack")
    bare = tmp_path / "bare.engine"
    bare.write_bytes(b"")
    with pytest.raises(ModelError, match="has no sidecar bare.engine.json"):
        prepare_refit(bare, files / "shared4.pack")


def test_corrupt_artifact_is_one_line_on_the_command_line(files, tmp_path, capfd):
    engine = _stripped_sidecar(files, "corrupt", BuildConfig(strip_weights=True))
    art = (files / "shared4.pack").read_bytes()
    bad = tmp_path / "bad.pack"
    bad.write_bytes(art[: len(art) // 2])
    with pytest.raises(ArtifactError):
        prepare_refit(engine, bad)
    capfd.readouterr()
    assert main(["refit", str(engine), str(bad), "-o", str(tmp_path / "out.engine")]) == 2
    err = capfd.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("trtcompress refit: error: ") and "bad.pack" in err[0]
    assert not (tmp_path / "out.engine").exists()


@pytest.mark.skipif(available("tensorrt"), reason="TensorRT is installed here")
def test_missing_tensorrt_names_the_extra(files, tmp_path, capfd):
    engine = _stripped_sidecar(files, "notrt", BuildConfig(strip_weights=True))
    with pytest.raises(MissingDependencyError, match=r"tensorrt is needed for refitting TensorRT engines .*pip install 'trtcompress\[trt\]'"):
        refit_engine(engine, files / "shared4.pack", tmp_path / "out.engine")
    capfd.readouterr()
    assert main(["refit", str(engine), str(files / "shared4.pack"), "-o", str(tmp_path / "out.engine")]) == 2
    assert len(capfd.readouterr().err.strip().splitlines()) == 1
    assert not (tmp_path / "out.engine").exists()


@pytest.mark.trt
def test_stripped_engine_refitted_from_the_artifact_runs_like_the_full_engine(files, tmp_path):
    from trtcompress.comparison import CompareConfig, compare
    from trtcompress.data.base import model_inputs
    from trtcompress.data.readers import ReaderOptions, open_source
    from trtcompress.trt.build import build_engine
    from trtcompress.trt.engine import engine_loader

    shared = files / "shared4.onnx"
    full = build_engine(shared, tmp_path / "full.engine", BuildConfig(max_batch=8))
    stripped = build_engine(shared, tmp_path / "stripped.engine", BuildConfig(max_batch=8, strip_weights=True))
    with pytest.raises(ModelError, match="is a weight-stripped plan: refit it first"):
        engine_loader(stripped.engine_path)
    refitted = refit_engine(stripped.engine_path, files / "shared4.pack", tmp_path / "refitted.engine")
    sizes = {"full": full.engine_path.stat().st_size, "stripped": stripped.engine_path.stat().st_size,
             "artifact": (files / "shared4.pack").stat().st_size, "refitted": refitted.sizes["refitted_engine_bytes"]}
    print("engine sizes (bytes):", sizes)
    dense_bytes = json.loads(sidecar_path(stripped.engine_path).read_text())["refit"]["weights"]["bytes"]
    assert sizes["full"] - sizes["stripped"] > dense_bytes / 2 and refitted.weights_refitted > 0  # most weight bytes left the plan
    src = open_source("random:4", model_inputs(shared), ReaderOptions(batch_size=8))
    assert compare(full.engine_path, refitted.output_path, src, CompareConfig(atol=1e-4, rtol=1e-4)).passed
    assert compare(shared, refitted.output_path, src, CompareConfig(atol=1e-3, rtol=1e-3)).passed
    with pytest.raises(ModelError, match="already refitted"):  # the sidecar refit wrote beside it
        prepare_refit(refitted.output_path, files / "shared4.pack")
    # REFIT: new values of the same shapes (a re-shared model) into a stripped engine built once
    anyw = build_engine(shared, tmp_path / "any.engine", BuildConfig(max_batch=8, strip_weights=True, refit="any"))
    other = refit_engine(anyw.engine_path, files / "shared3.pack", tmp_path / "other.engine")
    assert compare(files / "shared3.onnx", other.output_path, src, CompareConfig(atol=1e-3, rtol=1e-3)).passed
