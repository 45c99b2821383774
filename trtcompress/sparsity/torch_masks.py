"""2:4 masks on a torch ``nn.Module``, held fixed through training with no help from the training loop.

Contract (what a fine-tuning loop can rely on):

* :func:`apply_2to4` computes the masks from the current weights (the same numpy rule as the ONNX
  stage), zeroes the pruned weights in place and returns a :class:`SparsityMasks`.
* From then on the masks hold by themselves: a gradient hook on each pruned weight zeroes the
  gradient of pruned entries, so SGD (with momentum, weight decay), Adam and AdamW leave them at
  exactly zero; and a forward pre-hook re-applies the mask before every forward in training mode,
  which also catches anything that writes the weights outside the optimizer (a dense
  ``load_state_dict``, a custom update). Evaluation and export see the weights untouched.
* Masks are not stored in ``state_dict`` (checkpoints load into a plain copy of the model); the
  pruned weights are zeros there. On resume, :meth:`SparsityMasks.from_zeros` re-derives the masks
  from those zeros, or :meth:`SparsityMasks.load_state_dict` restores saved masks exactly.
* :meth:`SparsityMasks.reapply` re-applies the masks by hand, :meth:`SparsityMasks.check` lists
  layers whose weights no longer follow their masks, :meth:`SparsityMasks.remove` drops the hooks
  (the weights stay pruned).
"""
from __future__ import annotations

import dataclasses
from typing import Any, Sequence

import numpy as np

from .._optional import require
from ..config import Config
from ..errors import ConfigError, ModelError
from ..select import Patterns
from .masks import GROUP, mask_2to4, retained_magnitude

__all__ = ["SparsityMasks", "Sparse24Config", "apply_2to4", "prunable_layers", "sparse24_student"]


@dataclasses.dataclass(frozen=True)
class Sparse24Config(Config):
    """Which torch layers to prune to 2:4 (the same rules as the ONNX ``sparsify`` stage)."""

    include: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()
    min_channels: int = 16

    def validate(self) -> None:
        if self.min_channels < 4:
            raise ConfigError(f"min_channels={self.min_channels} must be at least 4 (one group of 4)")


def _torch():
    return require("torch", "2:4 masks on torch modules")


def _reduction_axis(module: Any) -> int | None:
    """Axis of the weight summed over, or None for module types that are not pruned."""
    nn = _torch().nn
    if isinstance(module, nn.Linear):
        return 1
    if isinstance(module, (nn.Conv1d, nn.Conv2d, nn.Conv3d)):
        return 1
    if isinstance(module, (nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d)):
        return 0
    return None


def prunable_layers(
    model: Any,
    include: Sequence[str] = (),
    exclude: Sequence[str] = (),
    min_channels: int = 16,
) -> tuple[dict[str, tuple[Any, int]], dict[str, str]]:
    """Layers to prune (name -> (module, axis)) and layers left dense (name -> reason).

    The rules mirror the ONNX stage: TensorRT runs sparse only ungrouped convolutions and
    fully-connected layers whose input channels are a multiple of 4; small layers stay dense.
    """
    chosen: dict[str, tuple[Any, int]] = {}
    skipped: dict[str, str] = {}
    for name, module in model.named_modules():
        axis = _reduction_axis(module)
        if axis is None or getattr(module, "weight", None) is None:
            continue
        w = module.weight
        groups = getattr(module, "groups", 1)
        c_in = w.shape[axis]
        c_out = w.shape[1 - axis] * (groups if axis == 0 else 1)
        if include and not Patterns(tuple(include)).match((name,)):
            skipped[name] = "not matched by include patterns"
        elif exclude and Patterns(tuple(exclude)).match((name,)):
            skipped[name] = "matched by an exclude pattern"
        elif groups != 1:
            skipped[name] = f"grouped convolution (groups={groups}): TensorRT has no sparse kernels for it"
        elif c_in % GROUP:
            skipped[name] = f"input channels {c_in} not a multiple of {GROUP}"
        elif c_in < min_channels or c_out < min_channels:
            skipped[name] = f"{c_in} input / {c_out} output channels, fewer than min_channels={min_channels}"
        else:
            chosen[name] = (module, axis)
    return chosen, skipped


@dataclasses.dataclass
class _Entry:
    module: Any
    axis: int
    mask: Any  # torch.bool tensor, same shape and device as the weight
    handles: list[Any]


class SparsityMasks:
    """The 2:4 masks of a module's layers, and the hooks that hold them."""

    def __init__(self, model: Any) -> None:
        self.model = model
        self._entries: dict[str, _Entry] = {}
        self.skipped: dict[str, str] = {}
        self.retained: dict[str, float] = {}

    # -- building -----------------------------------------------------------------------------
    def _attach(self, name: str, module: Any, axis: int, mask_np: np.ndarray) -> None:
        torch = _torch()
        w = module.weight
        mask = torch.from_numpy(np.ascontiguousarray(mask_np)).to(device=w.device)
        if name in self._entries:
            for h in self._entries[name].handles:
                h.remove()
        entry = _Entry(module, axis, mask, [])

        def grad_hook(grad, e=entry):
            return grad * e.mask.to(dtype=grad.dtype, device=grad.device)

        def pre_hook(mod, args, e=entry):
            if mod.training:
                with torch.no_grad():
                    _mul_mask(mod.weight, e.mask)

        entry.handles.append(w.register_hook(grad_hook))
        entry.handles.append(module.register_forward_pre_hook(pre_hook))
        self._entries[name] = entry
        with torch.no_grad():
            _mul_mask(w, mask)

    @classmethod
    def from_zeros(cls, model: Any, include: Sequence[str] = (), exclude: Sequence[str] = (), min_channels: int = 16) -> "SparsityMasks":
        """Masks re-derived from the zeros of already pruned weights (resume from a checkpoint).

        Layers whose weights do not follow 2:4 are left alone and listed in ``skipped``.
        """
        masks = cls(model)
        chosen, masks.skipped = prunable_layers(model, include, exclude, min_channels)
        for name, (module, axis) in chosen.items():
            w = module.weight.detach().cpu().numpy()
            keep = w != 0
            if not _follows(keep, axis):
                masks.skipped[name] = "weights do not follow 2:4"
                continue
            # a kept weight that happens to be exactly zero may train again: top groups up to 2 kept
            keep = _complete_groups(keep, axis)
            masks._attach(name, module, axis, keep)
            masks.retained[name] = 1.0
        return masks

    # -- using ----------------------------------------------------------------------------------
    @property
    def names(self) -> list[str]:
        return list(self._entries)

    def mask(self, name: str) -> Any:
        return self._entries[name].mask

    def reapply(self) -> None:
        """Zero the pruned weights again (the hooks do this in training; call it after manual edits)."""
        torch = _torch()
        with torch.no_grad():
            for e in self._entries.values():
                _mul_mask(e.module.weight, e.mask)

    def check(self) -> list[str]:
        """Layers whose weights are non-zero where the mask prunes (empty when all hold)."""
        bad = []
        for name, e in self._entries.items():
            w = e.module.weight.detach()
            if bool((w[~e.mask.to(w.device)] != 0).any()):
                bad.append(name)
        return bad

    def remove(self) -> None:
        """Drop the hooks; the weights stay as they are (pruned)."""
        for e in self._entries.values():
            for h in e.handles:
                h.remove()
            e.handles.clear()

    def state_dict(self) -> dict[str, Any]:
        return {name: e.mask.detach().cpu().clone() for name, e in self._entries.items()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore masks saved with :meth:`state_dict` onto the same model structure."""
        modules = dict(self.model.named_modules())
        for name, mask in state.items():
            if name not in modules:
                raise ModelError(f"mask for layer {name!r} does not match the model; load masks into the model they were saved from")
            module = modules[name]
            axis = _reduction_axis(module)
            if axis is None or tuple(mask.shape) != tuple(module.weight.shape):
                raise ModelError(f"mask for layer {name!r} has shape {tuple(mask.shape)}, weight has {tuple(module.weight.shape)}")
            self._attach(name, module, axis, mask.cpu().numpy().astype(bool))

    def report(self) -> dict[str, Any]:
        layers = []
        total = zeros = 0
        for name, e in self._entries.items():
            n = int(e.mask.numel())
            z = int((~e.mask).sum())
            total, zeros = total + n, zeros + z
            layers.append({"layer": name, "shape": list(e.mask.shape), "params": n, "pruned": z, "retained_magnitude": self.retained.get(name)})
        return {
            "layers_pruned": len(layers),
            "params_in_pruned_layers": total,
            "zeros": zeros,
            "layers": layers,
            "skipped": [{"layer": k, "reason": v} for k, v in self.skipped.items()],
        }

    def __len__(self) -> int:
        return len(self._entries)

    def __repr__(self) -> str:
        return f"SparsityMasks({len(self)} layers, {len(self.skipped)} dense)"


def _mul_mask(w: Any, mask: Any) -> None:
    w.mul_(mask.to(dtype=w.dtype, device=w.device))


def _follows(keep: np.ndarray, axis: int) -> bool:
    moved = np.moveaxis(keep, axis, -1)
    g = moved.reshape(moved.shape[:-1] + (moved.shape[-1] // GROUP, GROUP))
    return bool((g.sum(-1) <= GROUP // 2).all())


def _complete_groups(keep: np.ndarray, axis: int) -> np.ndarray:
    """Top each group up to exactly 2 kept entries (lowest free index first) so masks are uniform."""
    moved = np.moveaxis(keep.copy(), axis, -1)
    shape = moved.shape
    g = moved.reshape(shape[:-1] + (shape[-1] // GROUP, GROUP))
    need = GROUP // 2 - g.sum(-1, keepdims=True)
    free_rank = np.cumsum(~g, axis=-1)  # 1-based rank among free slots
    g = g | (~g & (free_rank <= need))
    return np.moveaxis(g.reshape(shape), -1, axis)


def apply_2to4(
    model: Any,
    include: Sequence[str] = (),
    exclude: Sequence[str] = (),
    min_channels: int = 16,
) -> SparsityMasks:
    """Prune the eligible Linear / Conv / ConvTranspose layers of ``model`` to 2:4 and hold the masks.

    See the module docstring for the contract. Returns the :class:`SparsityMasks`; its ``skipped``
    maps each layer left dense to the reason.
    """
    torch = _torch()
    if not isinstance(model, torch.nn.Module):
        raise ModelError(f"apply_2to4 needs a torch nn.Module, got {type(model).__name__}")
    masks = SparsityMasks(model)
    chosen, masks.skipped = prunable_layers(model, include, exclude, min_channels)
    for name, (module, axis) in chosen.items():
        w = module.weight.detach().float().cpu().numpy()
        keep = mask_2to4(w, axis)
        masks.retained[name] = retained_magnitude(w, keep)
        masks._attach(name, module, axis, keep)
    return masks


def sparse24_student(student: Any, config: Sparse24Config | None = None) -> tuple[SparsityMasks, dict[str, Any]]:
    """Prune a student (a copy of the teacher) for distillation; returns the masks and a report.

    The masks hold through any training loop by themselves (see the module docstring), so a
    fine-tune needs nothing beyond calling the model.
    """
    config = config or Sparse24Config()
    masks = apply_2to4(student, config.include, config.exclude, config.min_channels)
    if not len(masks):
        raise ConfigError("no layer of the model can be pruned to 2:4 (see the skipped reasons: " + "; ".join(f"{k}: {v}" for k, v in masks.skipped.items()) + ")")
    report = masks.report()
    report["config"] = config.to_dict()
    return masks, report
