"""EAU as UDML's official code builds it: per-channel inverse-uncertainty weights trained by the task loss."""

from __future__ import annotations

import pytest
import torch

from mmrepro.methods import EAU
from mmrepro.methods.eau import log_channel_uncertainty, log_mean_exp
from mmrepro.models import build_model

from .helpers import batch, ctx


def test_weights_are_the_codes_per_channel_inverse_uncertainty(synthetic):
    # shicaiwei123/UDML models/basic_model.py AVClassifier_AUXI_eau.forward: a_std_fc = exp(0.5 * pool(a_std)),
    # weight_a = 2 v_std_fc^2 / (v_std_fc^2 + a_std_fc^2), per channel; a_std = exp(0.5 logvar)
    # (models/backbone.py ResNet_weight.forward).
    torch.manual_seed(0)
    method = EAU(build_model(synthetic)).eval()
    b = batch(synthetic, 8)
    parts = method.forward_parts(b)
    sa = torch.exp(0.5 * torch.exp(0.5 * parts.logvar["m0"]))
    sv = torch.exp(0.5 * torch.exp(0.5 * parts.logvar["m1"]))
    weight_a = 2 * sv**2 / (sv**2 + sa**2)
    assert torch.allclose(parts.fused_input["m0"], weight_a * parts.mu["m0"], atol=1e-6)
    assert torch.allclose(parts.output.weights["m0"], weight_a.mean(-1), atol=1e-6)
    lv = torch.tensor([[0.0, 2.0]])
    assert torch.allclose(log_channel_uncertainty(lv, "variance"), lv)
    assert torch.allclose(parts.intensity["m0"], torch.exp(0.5 * parts.logvar["m0"]).exp().mean(-1).log(), atol=1e-5)


def _variance_grad(synthetic, **kwargs) -> torch.Tensor:
    """Gradient of the log-variance layer through the weights alone (eval mode: z = mu; no KL)."""
    torch.manual_seed(0)
    method = EAU(build_model(synthetic), noise_epoch=5, beta=0.0, **kwargs)
    method.fit_begin(ctx(splits=synthetic))
    method.eval().training_step(batch(synthetic), ctx(0)).loss.backward()
    return method.heads["m0"].logvar[0].weight.grad


def test_the_task_loss_trains_the_variance_branch_from_the_first_step(synthetic):
    assert _variance_grad(synthetic).abs().sum() > 0
    assert not _variance_grad(synthetic, detach=True).any()
    assert not _variance_grad(synthetic, weight_epoch=1).any()  # delayed weights: no path before epoch 1


def test_a_noisier_channel_gets_less_weight_and_a_huge_std_does_not_overflow(synthetic):
    torch.manual_seed(0)
    method = EAU(build_model(synthetic)).eval()
    with torch.no_grad():
        method.heads["m1"].logvar[1].bias.fill_(10.0)  # sigma = exp(5) on m1: exp(sigma) overflows float32
    parts = method.forward_parts(batch(synthetic, 8))
    weights = parts.output.weights
    assert torch.isfinite(parts.output.logits).all() and (weights["m1"] < 1e-6).all() and (weights["m0"] > 2 - 1e-6).all()
    assert torch.allclose(log_mean_exp(torch.tensor([[0.0, 1000.0]])), torch.tensor([[1000.0 - 0.6931472]]))


@pytest.mark.parametrize("bad, match", [({"score": "std"}, "valid: 'code', 'variance'"),
                                        ({"gamma": -1.0}, "gamma"), ({"weight_epoch": -1}, "weight_epoch"),
                                        ({"task": "regression"}, "classification")])
def test_rejects_bad_settings(synthetic, bad, match):
    with pytest.raises(ValueError, match=match):
        EAU(build_model(synthetic), **bad)
    with pytest.raises(ValueError, match="EAU supports fusion concat"):
        EAU(build_model(synthetic, fusion="late"))
