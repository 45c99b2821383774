"""``pack``/``unpack``: a compact artifact for shipping an ONNX model, restored bit-exactly.

The artifact is a zip (entries stored, each already compressed) holding ``manifest.json``, every
one-byte initializer's bytes (shared weights' uint8 indices, int8 weights) entropy-coded on their
own, and the rest of the ONNX file LZMA-coded.
Index tensors are cut out of the file's bytes at recorded offsets and spliced back on unpack, so
the restored file is the original byte for byte, by construction (no protobuf re-serialisation).
Each index tensor is coded either as LZMA of its bytes or LZMA of its values bit-packed to the
bits they need, or LZMA of a table of the distinct byte values and each byte's position in it,
bit-packed (an int8 weight quantized from shared levels holds few distinct values, scattered over
the byte range): whichever is smallest. LZMA's literal coder models skewed byte streams (mostly the
zero index after pruning) well, while near-uniform indices gain from the bit packing.

Every entry carries the SHA-256 of its stored and of its decoded bytes, and the manifest the
SHA-256 of the whole model: a corrupt or truncated artifact is a one-line :class:`ArtifactError`.
"""
from __future__ import annotations

import hashlib
import io
import json
import lzma
import os
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ModelError

__all__ = ["ArtifactError", "pack_bytes", "unpack_bytes", "pack_file", "unpack_file", "FORMAT"]

FORMAT = "trtcompress-pack"
VERSION = 2  # 2 added the "levels" codec
READS = (1, 2)
_MIN_CUT = 64  # smaller uint8 tensors stay in the rest: an entry costs more than it saves
_LZMA = {"format": lzma.FORMAT_XZ, "preset": 9}


class ArtifactError(ModelError):
    """A packed artifact that cannot be read: not a pack, truncated, corrupt, or a checksum mismatch."""


def _sha(b: bytes) -> str:
    return hashlib.sha256(b).hexdigest()


def _bitpack(values: np.ndarray, bits: int) -> bytes:
    planes = (values[:, None] >> np.arange(bits, dtype=np.uint8)) & 1
    return np.packbits(planes.astype(np.uint8).ravel()).tobytes()


def _bitunpack(data: bytes, bits: int, count: int) -> bytes:
    planes = np.unpackbits(np.frombuffer(data, np.uint8))[: count * bits].reshape(count, bits)
    return (planes.astype(np.uint8) << np.arange(bits, dtype=np.uint8)).sum(axis=1, dtype=np.uint8).tobytes()


def _uint8_slices(model_bytes: bytes) -> list[tuple[str, bytes]]:
    import onnx

    try:
        model = onnx.load_model_from_string(model_bytes)
    except Exception as e:  # protobuf's DecodeError and friends
        raise ModelError(f"not an ONNX model ({type(e).__name__}); give the .onnx file to pack") from None
    if any(t.data_location == onnx.TensorProto.EXTERNAL for t in model.graph.initializer):
        raise ModelError("the model keeps weights in an external data file; pack takes a single-file ONNX (save it without external data)")
    one_byte = (onnx.TensorProto.UINT8, onnx.TensorProto.INT8)
    return [(t.name, t.raw_data) for t in model.graph.initializer if t.data_type in one_byte and len(t.raw_data) >= _MIN_CUT]


def _levels(values: np.ndarray) -> tuple[bytes, int]:
    """The distinct bytes (count - 1, then the table) and each value's position, bit-packed."""
    table, index = np.unique(values, return_inverse=True)
    bits = max(1, (table.size - 1).bit_length())
    return bytes([table.size - 1]) + table.tobytes() + _bitpack(index.astype(np.uint8), bits), bits


def _unlevels(data: bytes, bits: int, count: int) -> bytes:
    table = np.frombuffer(data[1:data[0] + 2], np.uint8)
    index = np.frombuffer(_bitunpack(data[data[0] + 2:], bits, count), np.uint8)
    return table[index].tobytes()


def _encode(values: np.ndarray) -> tuple[str, int, bytes]:
    """The smallest of the codecs: (codec, bits, stored bytes)."""
    bits = max(1, int(values.max()).bit_length())
    levels, level_bits = _levels(values)
    options = [("u8", 8, values.tobytes()), ("bits", bits, _bitpack(values, bits)), ("levels", level_bits, levels)]
    return min(((codec, b, lzma.compress(data, **_LZMA)) for codec, b, data in options), key=lambda c: len(c[2]))


_DECODE = {
    "u8": lambda data, bits, count: data,
    "bits": _bitunpack,
    "levels": _unlevels,
}


def pack_bytes(model_bytes: bytes) -> tuple[bytes, dict[str, Any]]:
    """The artifact for an ONNX file's bytes, and its report (sizes per part)."""
    cuts: list[tuple[int, int, str]] = []  # (offset, size, name); non-overlapping
    for name, raw in sorted(_uint8_slices(model_bytes), key=lambda t: -len(t[1])):
        start = 0
        while (off := model_bytes.find(raw, start)) >= 0:
            if all(off + len(raw) <= o or o + s <= off for o, s, _ in cuts):
                cuts.append((off, len(raw), name))
                break
            start = off + 1
    cuts.sort()
    entries, tensors, rest, pos = {}, [], [], 0
    for n, (off, size, name) in enumerate(cuts):
        raw = model_bytes[off:off + size]
        codec, bits, stored = _encode(np.frombuffer(raw, np.uint8))
        file = f"tensors/{n}.xz"
        entries[file] = stored
        tensors.append({"name": name, "offset": off, "size": size, "bits": bits, "codec": codec, "file": file,
                        "sha256": _sha(raw), "stored_sha256": _sha(stored)})
        rest.append(model_bytes[pos:off])
        pos = off + size
    rest.append(model_bytes[pos:])
    rest_raw = b"".join(rest)
    entries["rest.xz"] = lzma.compress(rest_raw, **_LZMA)
    manifest = {
        "format": FORMAT, "version": VERSION,
        "model": {"size": len(model_bytes), "sha256": _sha(model_bytes)},
        "rest": {"file": "rest.xz", "size": len(rest_raw), "sha256": _sha(rest_raw), "stored_sha256": _sha(entries["rest.xz"])},
        "tensors": tensors,
    }
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as z:
        z.writestr("manifest.json", json.dumps(manifest, indent=1))
        for file, data in entries.items():
            z.writestr(file, data)
    art = buf.getvalue()
    report = {
        "onnx_bytes": len(model_bytes), "artifact_bytes": len(art),
        "index_tensors": len(tensors), "index_bytes_raw": sum(t["size"] for t in tensors),
        "index_bytes_stored": sum(len(entries[t["file"]]) for t in tensors),
        "rest_bytes_raw": len(rest_raw), "rest_bytes_stored": len(entries["rest.xz"]),
        "ratio_vs_onnx": len(model_bytes) / len(art),
    }
    return art, report


def _entry(z: zipfile.ZipFile, file: str, stored_sha: str, where: str) -> bytes:
    try:
        data = z.read(file)
    except KeyError:
        raise ArtifactError(f"{where}: entry {file} is missing; the artifact is incomplete: pack the model again") from None
    if _sha(data) != stored_sha:
        raise ArtifactError(f"{where}: checksum mismatch in {file}; the artifact is corrupt: copy it again or re-pack")
    try:
        return lzma.decompress(data)
    except lzma.LZMAError as e:
        raise ArtifactError(f"{where}: {file} does not decompress ({e}); the artifact is corrupt: copy it again or re-pack") from None


def unpack_bytes(art: bytes, where: str = "artifact") -> bytes:
    """The ONNX file's bytes from an artifact, verified against the manifest's checksums."""
    try:
        z = zipfile.ZipFile(io.BytesIO(art))
        manifest = json.loads(z.read("manifest.json"))
    except (zipfile.BadZipFile, KeyError, ValueError, EOFError) as e:
        raise ArtifactError(f"{where} is not a readable trtcompress pack ({type(e).__name__}: {e}); it is truncated or not made by 'trtcompress pack'") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise ArtifactError(f"{where} is a zip but not a trtcompress pack (no {FORMAT} manifest)")
    if manifest.get("version") not in READS:
        raise ArtifactError(f"{where} is pack format version {manifest.get('version')}; this trtcompress reads versions {', '.join(map(str, READS))}: upgrade it")
    try:
        with z:
            rest = _entry(z, manifest["rest"]["file"], manifest["rest"]["stored_sha256"], where)
            if _sha(rest) != manifest["rest"]["sha256"]:
                raise ArtifactError(f"{where}: checksum mismatch in the decoded model body; the artifact is corrupt")
            parts, pos, removed = [], 0, 0  # pos: read position in rest; removed: bytes cut before it
            for t in manifest["tensors"]:
                data = _entry(z, t["file"], t["stored_sha256"], where)
                raw = _DECODE[t["codec"]](data, t["bits"], t["size"])
                if len(raw) != t["size"] or _sha(raw) != t["sha256"]:
                    raise ArtifactError(f"{where}: checksum mismatch in the indices of {t['name']}; the artifact is corrupt")
                at = t["offset"] - removed
                if not pos <= at <= len(rest):
                    raise ValueError(f"offset {t['offset']} of {t['name']} out of order")
                parts += [rest[pos:at], raw]
                pos, removed = at, removed + t["size"]
            parts.append(rest[pos:])
    except (KeyError, TypeError, ValueError, zipfile.BadZipFile, EOFError) as e:
        if isinstance(e, ArtifactError):
            raise
        raise ArtifactError(f"{where} is corrupt or malformed ({type(e).__name__}: {e}); copy it again or re-pack the model") from None
    model = b"".join(parts)
    if len(model) != manifest["model"]["size"] or _sha(model) != manifest["model"]["sha256"]:
        raise ArtifactError(f"{where}: the restored model does not match the manifest's checksum; the artifact is corrupt")
    return model


def pack_file(model_path: str | os.PathLike, out: str | os.PathLike) -> dict[str, Any]:
    """Pack the ONNX file ``model_path`` into ``out`` (written atomically); the report."""
    from ..fileio import atomic_path
    from ..model_io import require_model_file

    data = require_model_file(model_path).read_bytes()
    art, report = pack_bytes(data)
    with atomic_path(out) as tmp:
        tmp.write_bytes(art)
    return report


def unpack_file(art_path: str | os.PathLike, out: str | os.PathLike) -> int:
    """Restore the ONNX file packed in ``art_path`` into ``out`` (atomically); its size."""
    from ..fileio import atomic_path

    p = Path(art_path)
    if not p.is_file():
        raise ArtifactError(f"{p} is not a file; give the artifact written by 'trtcompress pack'")
    model = unpack_bytes(p.read_bytes(), where=str(p))
    with atomic_path(out) as tmp:
        tmp.write_bytes(model)
    return len(model)
