"""OGM-GE: on-the-fly gradient modulation with generalisation enhancement.

Peng et al., "Balanced Multimodal Learning via On-the-fly Gradient Modulation", CVPR 2022;
follows the official code (GeWu-Lab/OGM-GE_CVPR2022, ``main.py``, ``train_epoch``).  Per batch,
each modality's confidence in the true class is ``s_m = sum_i softmax(unimodal_logits_m)_i[y_i]``;
``rho_m`` is ``s_m`` over the mean of the others' scores (for two modalities, the code's
``score_v / score_a``).  The dominant modality (``rho_m > 1``) has its encoder's weight
gradients scaled by ``k_m = 1 - tanh(alpha * rho_m)`` (the paper's Eq. 10 and the code since
May 2022), the others keep ``k = 1``; modulation runs for epochs ``modulation_starts`` to
``modulation_ends`` inclusive.  Generalisation enhancement (GE) then adds Gaussian noise whose
std is that of the unmodulated gradient.  The authors train with SGD (momentum 0.9, weight decay
1e-4, StepLR(70, 0.1)); under Adam a persistent gradient scale is normalised away.

Deviations, each a flag: ``form="shifted"`` is ``1 - tanh(alpha * (rho_m - 1))``, an older form
that barely modulates near balance (never the default).  The code scales only 4-D (conv) weights;
here every weight of dimension >= 2, so that MLP encoders are modulated too.  With exactly equal
scores the code modulates its second modality; here no modality is dominant then.
"""

from __future__ import annotations

from typing import ClassVar, Iterable, Literal

import torch
from torch import Tensor

from ..data.core import LABEL, Batch
from ..models.multimodal import MultimodalModel
from .base import Joint, StepOut
from .checks import check_choice, check_range, check_window, require_modalities

Form = Literal["code", "shifted"]


def true_class_scores(unimodal_logits: dict[str, Tensor], labels: Tensor) -> dict[str, Tensor]:
    """``s_m``: each modality's summed softmax probability of the true class over the batch."""
    return {m: lg.softmax(-1).gather(1, labels.view(-1, 1)).sum() for m, lg in unimodal_logits.items()}


def ogm_coefficients(scores: dict[str, Tensor], alpha: float, form: Form = "code") -> dict[str, Tensor]:
    """``k_m``: ``1 - tanh(alpha * rho_m)`` for a dominant modality (``rho_m > 1``), exactly 1 otherwise."""
    s = torch.stack(list(scores.values()))
    others = (s.sum() - s) / max(len(s) - 1, 1)
    ratio = s / others.clamp_min(1e-8)
    k = 1 - torch.tanh(alpha * (ratio if form == "code" else ratio - 1))
    return dict(zip(scores, torch.where(ratio > 1, k, torch.ones_like(k))))


@torch.no_grad()
def modulate_gradients(params: Iterable[torch.nn.Parameter], coeff: Tensor, gaussian: bool = True) -> None:
    """OGM-GE's gradient edit: each weight's (dim >= 2) gradient times ``coeff``, plus, with ``gaussian``,
    noise whose std is that of the unmodulated gradient (the code's GE); biases and norms are left alone."""
    for p in params:
        if p.grad is None or p.dim() < 2:  # weights only, as the code's 4-D filter
            continue
        noise_std = p.grad.std() + 1e-8
        p.grad.mul_(coeff.to(p.grad.dtype))
        if gaussian:
            p.grad.add_(torch.randn_like(p.grad) * noise_std)


class OGMGE(Joint):
    """Joint training whose encoder gradients are modulated by ``ogm_coefficients``; ``gaussian=False`` is OGM."""

    fusions: ClassVar[tuple[str, ...]] = ("concat", "sum")
    tasks: ClassVar[tuple[str, ...]] = ("classification",)

    def __init__(self, model: MultimodalModel, alpha: float = 0.1, gaussian: bool = True,
                 modulation_starts: int = 0, modulation_ends: int = 50, form: Form = "code",
                 task: str = "classification"):
        super().__init__(model, task)
        require_modalities("OGM-GE", model)
        check_range("OGM-GE alpha", alpha, 0)
        check_window(modulation_starts, modulation_ends)
        check_choice("OGM-GE form", form, ("code", "shifted"))
        self.alpha, self.gaussian, self.form = alpha, gaussian, form
        self.modulation_starts, self.modulation_ends = modulation_starts, modulation_ends
        self._coeffs: dict[str, Tensor] = {}

    def training_step(self, batch: Batch, ctx) -> StepOut:
        step = super().training_step(batch, ctx)
        with torch.no_grad():
            scores = true_class_scores(step.output.unimodal_logits, batch[LABEL])
            scores = {m: ctx.all_reduce(s, "sum") for m, s in scores.items()}  # every process modulates alike
            self._coeffs = ogm_coefficients(scores, self.alpha, self.form)
        step.logs.update({f"coeff_{m}": c for m, c in self._coeffs.items()})
        return step

    def after_backward(self, ctx) -> None:
        if not self.modulation_starts <= ctx.epoch <= self.modulation_ends:
            return
        for m, coeff in self._coeffs.items():
            modulate_gradients(self.model.encoders[m].parameters(), coeff, self.gaussian)
