"""The distillation loss (Hinton et al. 2015), with the T^2 factor that keeps soft-target gradients
on the scale of the hard-label ones as the temperature changes."""
from __future__ import annotations

from .._optional import require

__all__ = ["distillation_loss"]


def distillation_loss(student_logits, teacher_logits, labels, alpha: float, temperature: float):
    """alpha * CE(student, labels) + (1 - alpha) * T^2 * KL(softmax(teacher/T) || softmax(student/T)).

    The KL divergence is summed over classes and averaged over the batch (``batchmean``), the
    definition of KL per sample. ``labels`` None (label-free distillation) needs ``alpha`` 0.
    """
    torch = require("torch", "distillation")
    F = torch.nn.functional
    t = float(temperature)
    if labels is None:
        if alpha:
            raise ValueError(f"distillation without labels needs alpha 0, got {alpha}")
        ce = 0.0
    else:
        ce = F.cross_entropy(student_logits, labels)
    kl = F.kl_div(F.log_softmax(student_logits / t, dim=-1), F.log_softmax(teacher_logits.detach() / t, dim=-1), reduction="batchmean", log_target=True)
    return alpha * ce + (1.0 - alpha) * t * t * kl
