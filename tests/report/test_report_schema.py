"""report.json follows its versioned schema, and the built-in validator reads the schema as the
jsonschema package does (where it is installed: the dev extra)."""
from __future__ import annotations

import copy
import json

import pytest

from trtcompress.report import SCHEMA_VERSION, validate
from trtcompress.report.schema import SCHEMA_PATH, schema


def _departures(report: dict) -> list[dict]:
    """Reports that each break the schema in one way a reader would trip on."""
    out = []
    for edit in (
        lambda r: r.pop("status"),
        lambda r: r.pop("metrics"),  # a completed run without its metrics
        lambda r: r["compare"].__setitem__("samples", "many"),
        lambda r: r.__setitem__("passed", "yes"),
        lambda r: r.__setitem__("schema_version", SCHEMA_VERSION + 1),
        lambda r: r["bench"]["results"].__setitem__("one", r["bench"]["results"]["1"]),
        lambda r: r["bench"]["results"]["1"]["original"].__setitem__("samples_ms", [1.0] * 201),
        lambda r: r["stages"][-1]["report"]["layer_error"][0].pop("local_sqnr_db"),
        lambda r: r.__setitem__("status", "failed"),  # a failed run must say why
        lambda r: r["compare"]["outputs"]["logits"].__setitem__("kind", "probabilities"),
    ):
        bad = copy.deepcopy(report)
        edit(bad)
        out.append(bad)
    return out


def test_a_real_report_conforms(fashion_report):
    r = fashion_report
    assert r["schema_version"] == SCHEMA_VERSION == schema()["properties"]["schema_version"]["const"]
    assert validate(r) == []
    import onnxruntime

    assert r["versions"]["onnxruntime"] == onnxruntime.__version__ and r["versions"]["trtcompress"] == r["trtcompress"]
    assert r["command"][:2] == ["trtcompress", "compress"] and "--stages" in r["command"]
    # the latency distribution: every timed run, sorted, consistent with the percentiles beside it
    for batch, models in r["bench"]["results"].items():
        for stats in models.values():
            s = stats["samples_ms"]
            assert len(s) == stats["iterations"] and s == sorted(s)
            assert s[0] == pytest.approx(stats["min_ms"], rel=1e-3) and s[len(s) // 2 - 1] <= stats["p50_ms"] * 1.001 <= s[len(s) // 2] * 1.002


def test_departures_are_named(fashion_report):
    found = [validate(bad) for bad in _departures(fashion_report)]
    assert all(found), [i for i, f in enumerate(found) if not f]
    assert "$: missing required field 'status'" in found[0]
    assert any(e.startswith("$.compare.samples:") for e in found[2])
    assert any("one (name)" in e for e in found[5])
    assert any("failure" in e for e in found[8])


def test_latency_samples_are_bounded():
    from trtcompress.benchmark import SAMPLES_KEPT, latency_stats

    s = latency_stats([0.001 * (i % 97 + 1) for i in range(5000)], batch=1)
    assert len(s["samples_ms"]) == SAMPLES_KEPT and s["samples_ms"][0] == s["min_ms"] and s["samples_ms"][-1] == pytest.approx(97.0)


def test_jsonschema_agrees(fashion_report):
    jsonschema = pytest.importorskip("jsonschema")
    doc = json.loads(SCHEMA_PATH.read_text())
    jsonschema.Draft202012Validator.check_schema(doc)
    v = jsonschema.Draft202012Validator(doc)
    assert list(v.iter_errors(fashion_report)) == []
    for bad in _departures(fashion_report):
        assert bool(list(v.iter_errors(bad))) == bool(validate(bad))
