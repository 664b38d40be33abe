"""TMC: Dempster's rule on Dirichlet opinions, its loss, and one training step that fuses by it."""

from __future__ import annotations

import torch

from mmrepro.methods import build
from mmrepro.methods.tmc import dempster_combine, dirichlet_loss

from .helpers import batch, ctx, loss_before_and_after_a_step


def test_dempster_with_a_vacuous_opinion_returns_the_other():
    alpha = torch.tensor([[5.0, 2.0, 1.0]])
    assert torch.allclose(dempster_combine(alpha, torch.ones(1, 3)), alpha)
    agree = dempster_combine(alpha, alpha)
    assert agree.sum() > alpha.sum()  # two agreeing opinions: more evidence, less uncertainty
    labels = torch.tensor([0])
    assert dirichlet_loss(agree, labels, 0.0) < dirichlet_loss(alpha, labels, 0.0)


def test_tmc_fuses_by_dempsters_rule_and_a_step_lowers_its_loss(synthetic):
    b, c = batch(synthetic, 16), ctx(1, synthetic)
    torch.manual_seed(0)
    tmc = build("tmc", synthetic)
    step = tmc.training_step(b, c)
    step.loss.backward()
    alphas = {m: lg.exp() for m, lg in step.output.unimodal_logits.items()}
    assert torch.allclose(step.output.logits.exp(), dempster_combine(alphas["m0"], alphas["m1"]), atol=1e-5)
    assert all(((w >= 0) & (w < 1)).all() for w in step.output.weights.values()), "belief mass = 1 - uncertainty"
    assert all(tmc.model.encoders[m].net[0].weight.grad.abs().sum() > 0 for m in synthetic.modalities)
    before, after = loss_before_and_after_a_step(tmc, b, c)
    assert after < before
