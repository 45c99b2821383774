"""pack/unpack: bit-exact round trip, compression, and one-line errors on bad artifacts."""
from __future__ import annotations

import io
import json
import zipfile

import onnx
import pytest

from trtcompress.cli.main import main
from trtcompress.share import ShareConfig
from trtcompress.share.onnx_share import share_onnx
from trtcompress.share.pack import ArtifactError, pack_bytes, unpack_bytes
from trtcompress.zoo.models import onnx_path


@pytest.fixture(scope="module")
def shared_bytes():
    model, _ = share_onnx(onnx.load(onnx_path("fashion_cnn")), ShareConfig(bits=4, prune=0.5))
    return model.SerializeToString()


@pytest.fixture(scope="module")
def artifact(shared_bytes):
    return pack_bytes(shared_bytes)


def test_round_trip_is_bit_exact_and_smaller(shared_bytes, artifact):
    art, report = artifact
    assert unpack_bytes(art) == shared_bytes
    assert report["index_tensors"] == 7
    # half the weights are zero and the rest take 4 bits: well under one byte per index
    assert report["index_bytes_stored"] < 0.5 * report["index_bytes_raw"]
    assert len(art) < len(shared_bytes) / 2


def test_round_trip_of_a_float_model_without_indices():
    data = onnx_path("fashion_cnn").read_bytes()
    art, report = pack_bytes(data)
    assert report["index_tensors"] == 0
    assert unpack_bytes(art) == data


def test_cli_round_trip_files_equal(tmp_path, shared_bytes):
    src = tmp_path / "m.onnx"
    src.write_bytes(shared_bytes)
    assert main(["pack", str(src), "-o", str(tmp_path / "m.pack"), "--reference", str(onnx_path("fashion_cnn"))]) == 0
    assert main(["unpack", str(tmp_path / "m.pack"), "-o", str(tmp_path / "r.onnx")]) == 0
    assert (tmp_path / "r.onnx").read_bytes() == shared_bytes


def _rewrite(art: bytes, change) -> bytes:
    """The artifact with its entries passed through ``change(name, data) -> data`` (a valid zip)."""
    src = zipfile.ZipFile(io.BytesIO(art))
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        for name in src.namelist():
            data = change(name, src.read(name))
            if data is not None:
                z.writestr(name, data)
    return buf.getvalue()


def _flip(data: bytes) -> bytes:
    b = bytearray(data)
    b[len(b) // 2] ^= 0x01
    return bytes(b)


@pytest.mark.parametrize("case, expected", [
    ("truncated", "truncated"),
    ("bitflip", "corrupt"),
    ("entry checksum", "checksum mismatch in tensors/0.xz"),
    ("rest checksum", "checksum mismatch in rest.xz"),
    ("missing entry", "entry tensors/1.xz is missing"),
    ("not a pack", "not a trtcompress pack"),
    ("newer version", "format version 99"),
])
def test_bad_artifacts_are_one_line_errors(artifact, case, expected):
    art, _ = artifact
    bad = {
        "truncated": lambda: art[: len(art) // 2],
        "bitflip": lambda: _flip(art),  # zip's CRC or our checksum catches it
        "entry checksum": lambda: _rewrite(art, lambda n, d: _flip(d) if n == "tensors/0.xz" else d),
        "rest checksum": lambda: _rewrite(art, lambda n, d: _flip(d) if n == "rest.xz" else d),
        "missing entry": lambda: _rewrite(art, lambda n, d: None if n == "tensors/1.xz" else d),
        "not a pack": lambda: _rewrite(art, lambda n, d: b'{"format": "other"}' if n == "manifest.json" else d),
        "newer version": lambda: _rewrite(art, lambda n, d: json.dumps({**json.loads(d), "version": 99}).encode() if n == "manifest.json" else d),
    }[case]()
    with pytest.raises(ArtifactError, match=expected) as e:
        unpack_bytes(bad)
    assert "\n" not in str(e.value)


def test_cli_bad_artifact_exits_2_with_one_line(tmp_path, artifact, capsys):
    art, _ = artifact
    p = tmp_path / "bad.pack"
    p.write_bytes(art[:1000])
    assert main(["unpack", str(p), "-o", str(tmp_path / "r.onnx")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "truncated" in err
    assert not (tmp_path / "r.onnx").exists()
