"""Trained centroids (Deep Compression, Han et al. 2016, section 3.3): the shared layers of the torch
student keep their cluster indices fixed and train only the shared values.

Each shared module's ``weight`` parameter is replaced by ``weight_centroids`` (the codebook, a
parameter) and buffers ``weight_indices`` (fixed), ``weight_factor`` (per output channel) and
``weight_fixed``/``weight_live`` (entries that never train); a forward pre-hook sets
``weight = where(live, centroids, fixed)[indices] * factor``. Autograd of that gather is the
paper's rule: a centroid's gradient is the sum of the gradients of the weights that share it
(in the ONNX model's units; ``factor`` maps them to the torch module's, see below).

Frozen entries: the zero centroid that pruned weights share (so they stay exactly zero, whatever
the optimizer does) and, on the INT8 grid, the levels ±127 that carry each channel's scale. On the
INT8 grid the levels train as fractions of the channel's range (level / 127, so an optimizer step
means what it means on a weight) and are rounded back onto integers at the end
(:meth:`CentroidSet.snap`): levels train as real values and are snapped once, a shift of at most half a grid step
(1/254 of the channel's range), so the weights a later ``quantize`` finds are still exactly the
shared levels.

``factor``: the ONNX weight is ``book[idx] * scale`` with any BatchNorm folded in by normalize; the
torch module's weight is not. Where the teacher's weight quantizes to exactly these indices at the
ONNX scale (nothing folded), ``factor`` is that scale and the student starts as the ONNX model;
otherwise it is the per-channel least-squares fit of the teacher's weight on ``book[idx]`` (the
fold, up to the clustering's error). The export refits the per-channel scale exactly
(:mod:`trtcompress.share.reshare`), so the written ONNX computes what the trained student computes.
Imports torch: import it only where torch is installed.
"""
from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from .._optional import require
from ..errors import ModelError
from ..share.read import SharedLayer
from .structure import match

torch = require("torch", "trained centroids")
nn = torch.nn

__all__ = ["INT8_FIXED", "SHARED_MATCH", "CentroidSet", "attach_centroids"]

# a shared ONNX layer matches a torch module when the module's weight (zeroed where the ONNX weight
# is) has this mean |cosine| per output channel with the decoded weight (4-bit sharing gives ~0.99)
SHARED_MATCH = 0.8
INT8_FIXED = 127.0
# the teacher's weight "is" the ONNX weight when it quantizes to the shared indices this often
_SAME_INDICES = 0.99
_LAYERS = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)


@dataclasses.dataclass
class _Entry:
    name: str  # torch module name
    module: Any
    layer: SharedLayer
    int8: bool
    handle: Any = None


class CentroidSet:
    """The shared modules of a student, their hooks, and what training may change."""

    def __init__(self, entries: list[_Entry]):
        self.entries = entries

    @property
    def names(self) -> list[str]:
        return [e.name for e in self.entries]

    def centroids(self) -> dict[str, np.ndarray]:
        """Each module's codebook as it now is (frozen entries included), torch module name -> array."""
        return {e.name: _effective(e.module).detach().cpu().numpy() * (INT8_FIXED if e.int8 else 1.0) for e in self.entries}

    def snap(self) -> float:
        """Round the INT8-grid levels to integers in [-127, 127]; the largest shift, in grid steps."""
        shift = 0.0
        with torch.no_grad():
            for e in self.entries:
                if e.int8:
                    c = e.module.weight_centroids
                    snapped = (c * INT8_FIXED).round().clamp(-INT8_FIXED, INT8_FIXED) / INT8_FIXED
                    live = e.module.weight_live
                    if bool(live.any()):
                        shift = max(shift, float((snapped - c).abs()[live].max()) * INT8_FIXED)
                    c.copy_(snapped)
        return shift

    def bake(self) -> dict[str, np.ndarray]:
        """Remove the hooks and give each module a plain ``weight`` parameter holding the decoded
        shared weight (for export); returns the codebooks baked, by torch module name."""
        books = self.centroids()
        for e in self.entries:
            m = e.module
            with torch.no_grad():
                w = _decode(m).detach().clone()
            e.handle.remove()
            for n in ("weight_centroids",):
                del m._parameters[n]
            for n in ("weight_indices", "weight_factor", "weight_fixed", "weight_live"):
                del m._buffers[n]
            if "weight" in m.__dict__:
                del m.__dict__["weight"]
            m.weight = nn.Parameter(w)
        return books


def _effective(m):
    return torch.where(m.weight_live, m.weight_centroids, m.weight_fixed)


def _decode(m):
    """The shared weight: each index's centroid, times the channel's factor."""
    c = _effective(m)
    idx = m.weight_indices
    if c.ndim == 1:
        w = c[idx]
    else:  # a codebook per output channel
        w = torch.gather(c, 1, idx.reshape(idx.shape[0], -1)).reshape(idx.shape)
    return w * m.weight_factor


def _pre_hook(module, args):
    module.weight = _decode(module)


def attach_centroids(student, shared: list[SharedLayer], taken: set[str] | None = None) -> tuple[CentroidSet, dict[str, Any]]:
    """Match each shared ONNX layer to a module of ``student`` and make its centroids the trained
    values; returns the set and a report (module per layer, how the factor was found)."""
    taken = set(taken or ())
    weights = {n: m.weight.detach().cpu().float().numpy() for n, m in student.named_modules()
               if isinstance(m, _LAYERS) and isinstance(getattr(m, "weight", None), nn.Parameter)}
    entries, report = [], {}
    for layer in shared:
        decoded = layer.decoded()
        found = match(decoded, layer.weight_name, 0, weights, SHARED_MATCH, True, taken)
        if found is None:
            raise ModelError(f"finetune: shared ONNX layer {layer.node!r} (weight {list(decoded.shape)}) matches no layer of the torch "
                             "model; the torch model must be the one the ONNX model was exported from")
        name, score = found
        taken.add(name)
        module = student.get_submodule(name)
        int8 = layer.int8_grid
        factor, how = _factor(weights[name], layer)
        _install(module, layer, factor, int8)
        entry = _Entry(name, module, layer, int8)
        entry.handle = module.register_forward_pre_hook(_pre_hook)
        entries.append(entry)
        report[layer.node] = {"module": name, "match": round(score, 4), "factor": how, "clusters": layer.k,
                              "per_channel": layer.per_channel, "int8_grid": int8,
                              "frozen": int((~module.weight_live).sum())}
    return CentroidSet(entries), report


def _factor(teacher: np.ndarray, layer: SharedLayer) -> tuple[np.ndarray, str]:
    """Per output channel: ONNX units -> the torch module's (see the module docstring)."""
    out = teacher.shape[0]
    scale = layer.scale if layer.scale is not None else np.ones(out, np.float32)
    values = _values(layer)  # book[idx], no scale
    if _same_indices(teacher / scale.reshape((-1,) + (1,) * (teacher.ndim - 1)), layer):
        return scale.astype(np.float32), "scale"
    v, t = values.reshape(out, -1).astype(np.float64), teacher.reshape(out, -1).astype(np.float64)
    den = (v * v).sum(1)
    fit = np.where(den > 0, (v * t).sum(1) / np.where(den > 0, den, 1.0), scale)
    if layer.int8_grid:
        # the INT8 grid's scale is the channel's max |w| / 127 whatever was folded into w, so in the
        # torch module's units it is exactly the module's own max |w| / 127 (sign: the fold's)
        amax = np.abs(t).max(1) / INT8_FIXED
        return np.where(amax > 0, np.sign(fit) * amax, fit).astype(np.float32), "channel max / 127 (folded normalisation)"
    return fit.astype(np.float32), "least squares (folded normalisation)"


def _values(layer: SharedLayer) -> np.ndarray:
    if layer.per_channel:
        return np.take_along_axis(layer.book, layer.idx.reshape(len(layer.idx), -1), axis=1).reshape(layer.idx.shape)
    return layer.book[layer.idx]


def _nearest(x: np.ndarray, book: np.ndarray) -> np.ndarray:
    """The nearest non-zero entry of ``book`` (share assigns non-zero weights among those only)."""
    order = np.argsort(book, kind="stable")
    order = order[book[order] != 0] if (book != 0).any() else order
    s = book[order]
    return order[np.clip(np.searchsorted((s[1:] + s[:-1]) / 2, x), 0, len(s) - 1)]


def _same_indices(units: np.ndarray, layer: SharedLayer) -> bool:
    """Whether ``units`` (the teacher's weight in codebook units) quantizes to the shared indices,
    weights on an exact-zero centroid aside (pruned by share)."""
    if layer.per_channel:
        rows, idx = units.reshape(len(units), -1), layer.idx.reshape(len(units), -1)
        near = np.stack([_nearest(r, b) for r, b in zip(rows, layer.book)])
        zero = np.take_along_axis(layer.book, idx.astype(np.int64), axis=1) == 0
    else:
        near, idx = _nearest(units, layer.book), layer.idx
        zero = layer.book[idx] == 0
    live = ~zero
    return bool(live.any()) and float(np.mean(near[live] == idx[live])) >= _SAME_INDICES


def _install(module, layer: SharedLayer, factor: np.ndarray, int8: bool) -> None:
    dtype = module.weight.dtype
    book = torch.tensor(np.array(layer.book), dtype=dtype)
    fixed = book == 0
    if int8:  # levels trained as fractions of the channel's range: an optimizer step means the same as on a weight
        fixed |= book.abs() == INT8_FIXED
        book, factor = book / INT8_FIXED, factor * INT8_FIXED
    del module._parameters["weight"]
    module.register_parameter("weight_centroids", nn.Parameter(book.clone()))
    module.register_buffer("weight_indices", torch.as_tensor(layer.idx.astype(np.int64)))
    module.register_buffer("weight_factor", torch.as_tensor(factor, dtype=dtype).reshape((-1,) + (1,) * (layer.idx.ndim - 1)))
    module.register_buffer("weight_fixed", book.clone())
    module.register_buffer("weight_live", ~fixed)
    module.weight = _decode(module)

