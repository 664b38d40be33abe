"""Greedy: balanced multimodal learning by re-balancing the conditional utilisation rates.

Wu, Jastrzebski, Cho and Geras, "Characterizing and Overcoming the Greedy Nature of Learning in
Multi-modal Deep Neural Networks", ICML 2022; follows the official code
(nyukat/greedy_multimodal_learning: ``src/balanced_mmtm.py``, ``MMTM_mitigate``;
``src/callbacks.py``, ``Bias_Mitigation_Strong``; ``configs/training_guided.gin``).  Two branches
exchange information through an MMTM module (squeeze the concatenated features, excite each
branch by a sigmoid gate); each branch has its own head, the prediction is their mean, and the
loss is the sum of the branches' cross-entropies.  After each backward pass the conditional
learning speed of each branch is estimated from accumulated ``|grad|^2 / |w|^2`` of its MMTM
(bypass) and of its own (main) parameters: ``d = log10(B_0 / M_0) - log10(B_1 / M_1)``.  From
epoch ``starting_epoch`` on, when ``|d| > epsilon`` the next ``window`` steps are re-balancing
steps: the gate of the branch that learns faster from the other (0 if ``d > 0``) is replaced by
its running average, so it must learn from its own input.  The authors train with SGD (lr 0.1,
no momentum, batch 8, ``configs/training_guided.gin``).

Deviations: MMTM sits on the encoders' pooled output features (the code also inserts MMTMs at
ResNet stages 2 and 3; at the last stage, gating before or after average pooling is the same).
The code's running average of the second branch's gate reads the first branch's gate (a slip
that only works for equal widths); here each branch averages its own.  Evaluation never
re-balances.
"""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import Tensor, nn

from ..data.core import Batch
from ..models.multimodal import MultimodalModel, Output
from .base import LateFusionTraining, StepOut
from .checks import check_range, require_modalities


class MMTM(nn.Module):
    """Multimodal transfer module on (B, D_m) features, with each gate's running average kept."""

    def __init__(self, dims: dict[str, int], ratio: float = 4.0):
        super().__init__()
        total = sum(dims.values())
        self.squeeze = nn.Linear(total, int(2 * total / ratio))
        self.excite = nn.ModuleDict({m: nn.Linear(int(2 * total / ratio), d) for m, d in dims.items()})
        for m, d in dims.items():
            self.register_buffer(f"avg_{m}", torch.zeros(d))
        self.register_buffer("steps", torch.zeros(()))

    def forward(self, features: dict[str, Tensor], frozen: Tensor | None = None) -> dict[str, Tensor]:
        """Gated features; ``frozen[i]`` (a bool tensor per modality) swaps that gate for its running average."""
        hidden = torch.relu(self.squeeze(torch.cat([features[m] for m in self.excite], -1)))
        gates = {m: torch.sigmoid(fc(hidden)) for m, fc in self.excite.items()}
        if self.training:
            with torch.no_grad():
                for m, g in gates.items():
                    avg = getattr(self, f"avg_{m}")
                    avg.copy_((g.mean(0) + avg * self.steps) / (self.steps + 1))
                self.steps.add_(1)
        if frozen is not None:
            gates = {m: torch.where(frozen[i], getattr(self, f"avg_{m}").expand_as(g), g)
                     for i, (m, g) in enumerate(gates.items())}
        return {m: features[m] * g for m, g in gates.items()}


def speed_ratio(params: list[nn.Parameter]) -> Tensor:
    """``sum |grad|^2 / sum |w|^2`` over ``params`` (missing gradients count as zero)."""
    grads = [p.grad.pow(2).sum() for p in params if p.grad is not None]
    gn = torch.stack(grads).sum() if grads else torch.zeros(())
    return gn / torch.stack([p.detach().pow(2).sum() for p in params]).sum().clamp_min(1e-12)


def utilisation_gap(accumulated: Tensor) -> Tensor:
    """``d = log10(B_0 / M_0) - log10(B_1 / M_1)`` from accumulated ratios, rows (main, bypass) per branch."""
    bdr = torch.log10(accumulated[:, 1] / accumulated[:, 0].clamp_min(1e-30))
    return bdr[0] - bdr[1]


class Greedy(LateFusionTraining):
    """Late fusion through an MMTM, with guided re-balancing steps when one branch leans on the other."""

    fusions: ClassVar[tuple[str, ...]] = ("late",)
    tasks: ClassVar[tuple[str, ...]] = ("classification",)

    def __init__(self, model: MultimodalModel, epsilon: float = 0.01, window: int = 5, starting_epoch: int = 2,
                 mmtm_ratio: float = 4.0, task: str = "classification"):
        super().__init__(model, task)
        require_modalities("Greedy", model, exactly=2)
        check_range("Greedy epsilon", epsilon, 0)
        check_range("Greedy mmtm_ratio", mmtm_ratio, 0, low_open=True)
        if window < 1 or starting_epoch < 0:
            raise ValueError(f"Greedy needs window >= 1 and starting_epoch >= 0, got {window} and {starting_epoch}")
        self.epsilon, self.window, self.starting_epoch = epsilon, window, starting_epoch
        self.mmtm = MMTM({m: int(e.out_dim) for m, e in model.encoders.items()}, mmtm_ratio)
        self.register_buffer("accumulated", torch.zeros(2, 2))  # branch x (main, bypass)
        self.register_buffer("gap", torch.zeros(()))
        self.register_buffer("curating", torch.tensor(False))
        self.register_buffer("caring", torch.tensor(0))
        self.register_buffer("curation_step", torch.tensor(0))

    def _forward(self, batch: Batch, frozen: Tensor | None) -> Output:
        features = self.model.encode(batch)
        if set(features) == set(self.modalities):
            features = self.mmtm(features, frozen)
        return self.model.fuse(features)

    def predict(self, batch: Batch) -> Output:
        return self._forward(batch, None)

    def training_step(self, batch: Batch, ctx) -> StepOut:
        frozen = self.curating & (torch.arange(2, device=self.caring.device) == self.caring)
        out = self._forward(batch, frozen)
        losses = {m: self.loss(lg, batch) for m, lg in out.unimodal_logits.items()}
        loss = torch.stack(list(losses.values())).sum()
        logs = {"loss": loss.detach(), "curation": self.curating.float(), "gap": self.gap.clone(),
                **{f"frozen_{m}": frozen[i].float() for i, m in enumerate(self.modalities)}}
        return StepOut(loss, out, logs)

    def _ratios(self) -> Tensor:
        """This step's (main, bypass) speed ratio of each branch; the shared squeeze layer counts for both."""
        shared = list(self.mmtm.squeeze.parameters())
        return torch.stack([torch.stack([
            speed_ratio([*self.model.encoders[m].parameters(), *self.model.fusion.heads[m].parameters()]),
            speed_ratio([*shared, *self.mmtm.excite[m].parameters()])]) for m in self.modalities])

    @torch.no_grad()
    def after_backward(self, ctx) -> None:
        """The code's ``on_backward_end``: accumulate, measure the gap, open or close a re-balancing window."""
        measuring = ~self.curating if ctx.epoch >= self.starting_epoch else torch.ones_like(self.curating)
        self.accumulated.copy_(torch.where(measuring, self.accumulated + self._ratios(), self.accumulated))
        self.gap.copy_(torch.where(measuring, utilisation_gap(self.accumulated), self.gap))
        if ctx.epoch < self.starting_epoch:
            return
        start = ~self.curating & (self.gap.abs() > self.epsilon)
        step = torch.where(self.curating, self.curation_step + 1, torch.zeros_like(self.curation_step))
        self.caring.copy_(torch.where(start, (self.gap < 0).long(), self.caring))  # d > 0: branch 0 leans on 1
        self.curating.copy_(start | (self.curating & (step < self.window)))
        self.curation_step.copy_(step)
