"""MMPareto as its official code: separate unimodal heads, min-norm weights, per-tensor gamma rescaling."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from mmrepro.methods import MMPareto
from mmrepro.methods.mmpareto import pareto_tensor_gradient, pareto_weight
from mmrepro.models import build_model
from mmrepro.train import fit

from .helpers import CFG, backward, batch, ctx, loss_before_and_after_a_step


def test_weights_are_half_without_conflict_and_min_norm_with_conflict():
    # GeWu-Lab/MMPareto_ICML2024 code/MMPareto.py L166-175: cos > 0 -> [0.5, 0.5], else
    # MinNormSolver (code/min_norm_solvers.py L28: gamma = -(v1v2 - v2v2) / (v1v1 + v2v2 - 2 v1v2)).
    a, conflict = pareto_weight(torch.tensor([1.0, 0.0]), torch.tensor([1.0, 1.0]))
    assert not conflict and a == 0.5
    g1, g2 = torch.tensor([1.0, 0.0]), torch.tensor([-0.5, 1.0])
    a, conflict = pareto_weight(g1, g2)
    v11, v12, v22 = 1.0, -0.5, 1.25
    assert conflict and a.item() == pytest.approx(-(v12 - v22) / (v11 + v22 - 2 * v12))
    d = a * g1 + (1 - a) * g2
    assert d @ g1 >= -1e-6 and d @ g2 >= -1e-6  # the min-norm point decreases both losses
    grid = torch.linspace(0, 1, 101)
    assert d.norm() <= min((t * g1 + (1 - t) * g2).norm() for t in grid) + 1e-4


def test_tensor_gradient_is_the_official_magnitude_step():
    # code/MMPareto.py L186-198: new = 2 k0 g_mm + 2 k1 g_uni; diff = |g_mm + g_uni| / |new|;
    # grad = gamma * diff * new if diff > 1 else gamma * new, gamma = 1.5.
    g_mm, g_uni, a = torch.tensor([3.0, 0.0]), torch.tensor([-1.0, 1.0]), torch.tensor(0.25)
    new = 2 * a * g_mm + 2 * (1 - a) * g_uni
    diff = (g_mm + g_uni).norm() / new.norm()
    expected = 1.5 * (diff * new if diff > 1 else new)
    assert torch.allclose(pareto_tensor_gradient(g_mm, g_uni, a), expected)
    small = pareto_tensor_gradient(torch.tensor([1.0, 0.0]), torch.tensor([1.0, 0.0]), torch.tensor(0.5))
    assert torch.allclose(small, 1.5 * torch.tensor([2.0, 0.0]))  # diff = 1: no stretch


def test_unimodal_losses_train_separate_heads_not_the_fused_one(synthetic):
    torch.manual_seed(0)
    method = MMPareto(build_model(synthetic))
    b = batch(synthetic)
    out = method.training_step(b, ctx()).output
    assert torch.allclose(out.unimodal_logits["m0"], method.aux.heads["m0"](out.features["m0"]))
    method.zero_grad()
    F.cross_entropy(out.unimodal_logits["m0"], b["label"]).backward()
    assert method.model.fusion.fc.weight.grad is None or not method.model.fusion.fc.weight.grad.any()


def test_encoder_gradients_are_replaced_heads_keep_the_summed_loss(synthetic):
    torch.manual_seed(0)
    method = MMPareto(build_model(synthetic))
    before, after = backward(method, batch(synthetic), ctx())
    assert all(torch.equal(after[k], before[k]) for k in before if not k.startswith("model.encoders."))
    changed = [k for k in before if k.startswith("model.encoders.") and not torch.allclose(after[k], before[k])]
    assert changed


@pytest.mark.parametrize("bad, match", [({"gamma": 0.0}, r"gamma must lie in \(0"),
                                        ({"task": "ranking"}, "classification")])
def test_rejects_bad_settings(synthetic, bad, match):
    with pytest.raises(ValueError, match=match):
        MMPareto(build_model(synthetic), **bad)
    with pytest.raises(ValueError, match="at least 2"):
        MMPareto(build_model(synthetic.select(["m1"])))


def test_mmpareto_fits(four_classes):
    torch.manual_seed(0)
    method = MMPareto(build_model(four_classes, "mlp", "sum"))
    b, c = batch(four_classes, 64), ctx(0, four_classes)
    start = method.training_step(b, c).logs
    before, after = loss_before_and_after_a_step(method, b, c, lr=0.05)
    now = method.training_step(b, c).logs
    assert after < before and all(now[k] < start[k] for k in ("loss_mm", "loss_m0", "loss_m1")), \
        "a step along the Pareto gradients lowers the fused loss and every unimodal loss"
    result = fit(method, four_classes, CFG)
    assert result.best_score > 0.4  # four classes: chance is 0.25
