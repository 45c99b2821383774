"""The torch side of the ``finetune`` stage: the ONNX structure applied to a copy of the teacher,
label-free training batches with augmentation, BatchNorm statistics held, and the before/after
measurement. Imports torch: import it only where torch is installed.
"""
from __future__ import annotations

import copy
import math
from typing import Any, Iterable, Iterator

import numpy as np

from .._optional import require
from ..errors import DataError, ModelError
from ..sparsity.masks import mask_2to4
from .structure import LOWRANK_MATCH, SPARSE_MATCH, OnnxStructure, match, unmatched_error

torch = require("torch", "the finetune stage")
nn = torch.nn
F = torch.nn.functional

__all__ = ["structured_student", "UnlabelledBatches", "Augmented", "HeldNorm", "recalibrate_norm", "measure", "logits"]

_LAYERS = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d)


def _weights(model) -> dict[str, np.ndarray]:
    return {n: m.weight.detach().cpu().float().numpy() for n, m in model.named_modules() if isinstance(m, _LAYERS) and getattr(m, "weight", None) is not None}


def _onnx_factors(module, pair, dense: np.ndarray) -> None:
    """Give a factorised module the ONNX pair's own factors: a shared factor's indices are fixed,
    so its torch factor must be the ONNX one, not the SVD of the torch weight (another basis).
    A BatchNorm folded into the ONNX layer scales the second factor's rows (the first sees no fold):
    the torch rows are the ONNX ones times the per-row least-squares fit of the torch weight on the
    ONNX product: 1 where nothing is folded, the fold's inverse up to the clustering's error where
    one is (as for any shared layer with a folded normalisation, :mod:`.centroids`)."""
    q, p = pair.first.weight, pair.second.weight
    onnx_dense = pair.dense().reshape(len(p), -1).astype(np.float64)
    w = dense.reshape(len(p), -1).astype(np.float64)
    den = (onnx_dense * onnx_dense).sum(1)
    fit = np.where(den > 0, (onnx_dense * w).sum(1) / np.where(den > 0, den, 1.0), 1.0)
    with torch.no_grad():
        for mod, value in ((module.first, q), (module.second, p * fit.reshape((-1,) + (1,) * (p.ndim - 1)))):
            mod.weight.copy_(torch.as_tensor(np.array(value, copy=True).reshape(mod.weight.shape), dtype=mod.weight.dtype))


def structured_student(teacher, structure: OnnxStructure) -> tuple[Any, Any, dict[str, Any]]:
    """A copy of ``teacher`` with the ONNX model's low-rank factorisations and 2:4 masks; returns
    (student, masks or None, report). Masks hold through training by themselves (sparsity.torch_masks)."""
    from ..lowrank.torch_modules import factorize_to_ranks
    from ..sparsity.torch_masks import SparsityMasks

    student = copy.deepcopy(teacher)
    for p in student.parameters():
        p.requires_grad_(True)
    weights = _weights(student)
    taken: set[str] = set()
    ranks: dict[str, int] = {}
    pair_module: dict[str, str] = {}  # pair base -> torch module name
    for pair in structure.pairs:
        dense = pair.dense()
        candidates = {n: w for n, w in weights.items() if isinstance(student.get_submodule(n), (nn.Linear, nn.Conv2d)) and getattr(student.get_submodule(n), "groups", 1) == 1}
        found = match(dense, "", 0, candidates, LOWRANK_MATCH, False, taken)
        if found is None:
            raise unmatched_error(pair.base, f"low-rank pair of rank {pair.rank}")
        name, _ = found
        taken.add(name)
        ranks[name] = pair.rank
        pair_module[pair.base] = name
    factorised = factorize_to_ranks(student, ranks)
    for pair in structure.pairs:
        if pair.first.shared or pair.second.shared:
            _onnx_factors(student.get_submodule(pair_module[pair.base]), pair, weights[pair_module[pair.base]])

    weights = _weights(student)
    pruned: dict[str, str] = {}  # torch module -> how its mask was found
    for layer in structure.sparse:
        member = structure.pair_of(layer)
        with torch.no_grad():
            if member is not None:
                # the torch factors come from the SVD of the unfolded weight, not the ONNX factors:
                # their 2:4 choice is remade by magnitude on them
                name = f"{pair_module[member[0].base]}.{member[1]}"
                mod = student.get_submodule(name)
                keep = mask_2to4(mod.weight.detach().cpu().numpy(), 1 if not isinstance(mod, nn.ConvTranspose2d) else 0)
                pruned[name] = "magnitude (low-rank factor)"
            else:
                found = match(layer.weight, layer.weight_name, layer.out_axis, weights, SPARSE_MATCH, True, taken | set(pruned))
                if found is None:
                    raise unmatched_error(layer.name, f"2:4 {layer.op} weight {list(layer.weight.shape)}")
                name = found[0]
                mod = student.get_submodule(name)
                keep = layer.weight != 0
                pruned[name] = "onnx zeros"
            mod.weight.mul_(torch.from_numpy(np.ascontiguousarray(keep)).to(mod.weight.dtype))
    masks = None
    if pruned:
        masks = SparsityMasks.from_zeros(student, include=tuple(pruned), min_channels=4)
        lost = sorted(set(pruned) - set(masks.names))
        if lost:
            raise ModelError(f"finetune: the 2:4 masks of {', '.join(lost)} could not be held on the torch model ({masks.skipped.get(lost[0])})")
    report = {
        "factorised": factorised,
        "pruned_layers": len(pruned),
        "masks": {k: v for k, v in sorted(pruned.items())},
        "onnx_layers_2to4": len(structure.sparse),
        "onnx_lowrank_pairs": len(structure.pairs),
    }
    return student, masks, report


def augment(x, crop_scale: float, flip: bool):
    """Random resized crop (area fraction in [crop_scale, 1], aspect 3/4..4/3) back to the input
    size, and a horizontal flip with probability 1/2, per sample of an NCHW batch. On preprocessed
    tensors: crops, resizes and flips commute with per-channel normalisation."""
    n, _, h, w = x.shape
    out = torch.empty_like(x)
    for i in range(n):
        area = h * w * float(torch.empty(1).uniform_(crop_scale, 1.0))
        ratio = math.exp(float(torch.empty(1).uniform_(math.log(3 / 4), math.log(4 / 3))))
        ch = max(1, min(h, int(round(math.sqrt(area / ratio)))))
        cw = max(1, min(w, int(round(math.sqrt(area * ratio)))))
        top = int(torch.randint(0, h - ch + 1, (1,)))
        left = int(torch.randint(0, w - cw + 1, (1,)))
        crop = x[i : i + 1, :, top : top + ch, left : left + cw]
        crop = F.interpolate(crop, size=(h, w), mode="bilinear", align_corners=False) if (ch, cw) != (h, w) else crop
        if flip and bool(torch.rand(1) < 0.5):
            crop = crop.flip(-1)
        out[i : i + 1] = crop
    return out


class UnlabelledBatches:
    """Shuffled ``(inputs, None)`` batches over samples held in memory (the trainer seeds torch's
    generator per epoch, so the order is fixed by the seed)."""

    def __init__(self, x: np.ndarray, batch_size: int):
        self.x, self.batch_size = torch.from_numpy(np.ascontiguousarray(x)), batch_size

    def __len__(self) -> int:
        return -(-len(self.x) // self.batch_size)

    def __iter__(self) -> Iterator[tuple[Any, None]]:
        order = torch.randperm(len(self.x))
        for start in range(0, len(order), self.batch_size):
            yield self.x[order[start : start + self.batch_size]], None

    def sharded(self, replica) -> Iterator[tuple[Any, None, float]]:
        """A data-parallel worker's share of every batch (trtcompress.finetune.parallel)."""
        order = torch.randperm(len(self.x))
        for start in range(0, len(order), self.batch_size):
            idx = order[start : start + self.batch_size]
            a, b, w = replica.part(len(idx))
            yield self.x[idx[a:b]], None, w


class Augmented:
    """``(inputs, labels)`` batches of ``data`` with :func:`augment` applied to image inputs (NCHW)."""

    def __init__(self, data: Iterable, crop_scale: float, flip: bool):
        self.data, self.crop_scale, self.flip = data, crop_scale, flip

    def __len__(self) -> int:
        return len(self.data)  # type: ignore[arg-type]

    def _augment(self, x):
        return augment(x, self.crop_scale, self.flip) if x.ndim == 4 and x.is_floating_point() else x

    def __iter__(self):
        for x, y in self.data:
            yield self._augment(x), y

    def sharded(self, replica):
        """A data-parallel worker's share of every batch, augmented after the split (each worker
        augments only its samples, with its own draws)."""
        for x, y, w in replica.shard(self.data):
            yield self._augment(x), y, w


class HeldNorm(nn.Module):
    """The student with its BatchNorm layers kept in eval mode while it trains: their statistics
    stay the teacher's (a few hundred unlabelled images estimate them worse), their scale and
    shift still train."""

    def __init__(self, module):
        super().__init__()
        self.module = module

    def train(self, mode: bool = True):
        super().train(mode)
        for m in self.module.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                m.eval()
        return self

    def forward(self, *args):
        return self.module(*args)


def recalibrate_norm(model, data: Iterable, samples: int) -> int:
    """Re-estimate the BatchNorm statistics of ``model`` on up to ``samples`` inputs of ``data`` (a
    plain average over batches). Pruning or factorising the layer before a BatchNorm changes its
    input statistics, so the teacher's no longer normalise it; returns the samples seen (0 when
    the model has no BatchNorm)."""
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats]
    if not norms or samples < 1:
        return 0
    momenta = [m.momentum for m in norms]
    was = model.training
    model.eval()
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # cumulative average
        m.train()
    seen = 0
    try:
        with torch.no_grad():
            while seen < samples:
                before = seen
                for x, _ in data:
                    model(x[: samples - seen])
                    seen += min(len(x), samples - seen)
                    if seen >= samples:
                        break
                if seen == before:
                    break
    finally:
        for m, mom in zip(norms, momenta):
            m.momentum = mom
        model.train(was)
    return seen


def logits(model, x):
    out = model(x)
    if not torch.is_tensor(out) or out.ndim != 2:
        raise ModelError(f"finetune distils a classifier with one [batch, classes] output; the model returned {type(out).__name__}{list(out.shape) if torch.is_tensor(out) else ''}")
    return out


def measure(teacher, students: dict[str, Any], data: Iterable) -> dict[str, Any]:
    """Top-1 agreement of each student with the teacher (and accuracy where labels are given)
    over ``(inputs, labels or None)`` batches; every model in eval mode."""
    agree = {k: 0 for k in students}
    right = {k: 0 for k in ("teacher", *students)}
    n = 0
    labelled = True
    with torch.no_grad():
        for x, y in data:
            t = logits(teacher.eval(), x).argmax(-1)
            labelled = labelled and y is not None
            if y is not None:
                right["teacher"] += int((t == y).sum())
            for k, s in students.items():
                p = logits(s.eval(), x).argmax(-1)
                agree[k] += int((p == t).sum())
                if y is not None:
                    right[k] += int((p == y).sum())
            n += len(x)
    if not n:
        raise DataError("finetune: the evaluation data holds no samples")
    out: dict[str, Any] = {"samples": n, **{f"agreement_{k}": agree[k] / n for k in students}}
    if labelled:
        out.update({f"accuracy_{k}": right[k] / n for k in right})
    return out
