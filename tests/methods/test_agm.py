"""AGM as its official code: Shapley shares, the exp-ratio coefficient, gradient scaling of each share."""

from __future__ import annotations

import math

import pytest
import torch

from mmrepro.methods import AGM
from mmrepro.methods.agm import agm_coefficients, agm_scores, scale_gradient, shapley_shares
from mmrepro.models import build_model

from .helpers import batch, ctx


def test_two_modality_shares_are_the_codes():
    # lihong2303/AGM_ICCV2023 model/AVMNIST_net.py L8-18: m_a = 0.5 (total - pad_audio_out + pad_visual_out),
    # where pad_visual_out = f(a, 0) and pad_audio_out = f(0, v).
    f_av, f_a, f_v = torch.randn(3, 4, 5, generator=torch.Generator().manual_seed(0)).unbind()
    shares = shapley_shares({frozenset("av"): f_av, frozenset("a"): f_a, frozenset("v"): f_v}, ("a", "v"))
    assert torch.allclose(shares["a"], 0.5 * (f_av - f_v + f_a), atol=1e-6)
    assert torch.allclose(shares["a"] + shares["v"], f_av, atol=1e-6)


def test_three_modality_shares_sum_to_the_fused_output():
    gen = torch.Generator().manual_seed(0)
    out = {frozenset(s): torch.randn(2, 3, generator=gen) for s in ("a", "b", "c", "ab", "ac", "bc", "abc")}
    shares = shapley_shares(out, ("a", "b", "c"))
    assert torch.allclose(sum(shares.values()), out[frozenset("abc")], atol=1e-6)


def test_coefficient_is_the_codes_exp_of_ratio_gap():
    # run/AVMNIST_main.py L106-117: ratio_a = exp((mean - s_a) * 2), optimal from the running scores,
    # coeff_a = exp(alpha * (optimal_ratio_a - ratio_a)).
    s, run, alpha = torch.tensor([0.3, 1.1]), torch.tensor([0.5, 0.9]), 0.7
    mean, rmean = 0.7, 0.7
    expected = [math.exp(alpha * (math.exp(2 * (rmean - r)) - math.exp(2 * (mean - x)))) for x, r in zip(s, run)]
    assert torch.allclose(agm_coefficients(s, run, alpha), torch.tensor(expected))
    # score: mean -log p(y), p floored at 1e-8 (L93-104)
    logits = {"a": torch.tensor([[0.0, 0.0], [100.0, -100.0]])}
    assert agm_scores(logits, torch.tensor([0, 1]))[0].item() == pytest.approx((math.log(2) - math.log(1e-8)) / 2)


def test_scale_gradient_keeps_the_value_and_scales_the_gradient():
    x = torch.tensor([1.0, 2.0], requires_grad=True)
    y = scale_gradient(x, torch.tensor(0.25))
    y.sum().backward()
    assert torch.equal(y.detach(), x.detach()) and torch.allclose(x.grad, torch.full((2,), 0.25))


def test_the_better_fitting_modality_is_slowed(synthetic):
    torch.manual_seed(0)
    method = AGM(build_model(synthetic), alpha=1.0)
    method.running_score.copy_(torch.tensor([0.5, 0.5]))
    method.steps.fill_(10)
    step = method.training_step(batch(synthetic), ctx())
    better, worse = sorted(("m0", "m1"), key=lambda m: float(step.logs[f"score_{m}"]))  # lower score: better fit
    assert step.logs[f"coeff_{better}"] < 1 < step.logs[f"coeff_{worse}"]
    assert torch.allclose(step.output.logits, method.model(batch(synthetic)).logits, atol=1e-5)
    late = AGM(build_model(synthetic), modulation_ends=0).training_step(batch(synthetic), ctx(1))
    assert late.logs["coeff_m0"] == late.logs["coeff_m1"] == 1


@pytest.mark.parametrize("bad, match", [({"alpha": -0.1}, "alpha"), ({"modulation_starts": 2, "modulation_ends": 1},
                                        "modulation_starts"), ({"task": "regression"}, "classification")])
def test_rejects_bad_settings(synthetic, bad, match):
    with pytest.raises(ValueError, match=match):
        AGM(build_model(synthetic), **bad)
    with pytest.raises(ValueError, match="at least 2"):
        AGM(build_model(synthetic.select(["m0"])))


def test_prediction_reports_the_shares_and_the_plain_model_when_a_modality_is_missing(synthetic):
    torch.manual_seed(0)
    method = AGM(build_model(synthetic)).eval()
    b = batch(synthetic, 8)
    out = method.predict(b)
    assert torch.allclose(out.unimodal_logits["m0"] + out.unimodal_logits["m1"], out.logits, atol=1e-5)
    alone = method.predict({k: v for k, v in b.items() if k != "m1"})
    assert torch.allclose(alone.logits, method.model({k: v for k, v in b.items() if k != "m1"}).logits)
