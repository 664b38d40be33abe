"""OGM-GE as its official code: coefficient, modulation of the dominant encoder only, window, checks."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from mmrepro.methods import OGMGE, Joint, ogm_coefficients, true_class_scores
from mmrepro.models import build_model

from .helpers import backward, batch, ctx, grads


def test_coefficient_is_the_official_one_minus_tanh_alpha_rho():
    # GeWu-Lab/OGM-GE_CVPR2022 main.py L108-124: ratio_v = score_v / score_a;
    # if ratio_v > 1: coeff_v = 1 - tanh(alpha * relu(ratio_v)), coeff_a = 1 (and symmetrically).
    alpha, s_v, s_a = 0.8, 21.0, 20.0
    k = ogm_coefficients({"v": torch.tensor(s_v), "a": torch.tensor(s_a)}, alpha)
    assert k["v"].item() == pytest.approx(1 - math.tanh(alpha * s_v / s_a)) == pytest.approx(0.3142, abs=1e-4)
    assert k["a"] == 1
    old = ogm_coefficients({"v": torch.tensor(s_v), "a": torch.tensor(s_a)}, alpha, form="shifted")
    assert old["v"].item() == pytest.approx(1 - math.tanh(alpha * (s_v / s_a - 1)))  # the named old variant
    three = ogm_coefficients({"a": torch.tensor(8.0), "b": torch.tensor(2.0), "c": torch.tensor(4.0)}, alpha=1.0)
    assert three["a"].item() == pytest.approx(1 - math.tanh(8.0 / 3.0), rel=1e-5) and three["b"] == three["c"] == 1


def test_only_the_dominant_encoders_weight_gradients_are_scaled(synthetic):
    torch.manual_seed(0)
    method = OGMGE(build_model(synthetic), alpha=0.8, gaussian=False)
    b = batch(synthetic)
    with torch.no_grad():  # make m0 dominant: a large true-class logit on m0's block
        method.model.fusion.fc.weight[:, :32] *= 20
    before, after = backward(method, b, ctx())
    k = method._coeffs
    dominant = max(k, key=lambda m: -k[m].item())
    assert k[dominant] < 1 and all(v == 1 for m, v in k.items() if m != dominant)
    for name, g in before.items():
        expected = g * k[dominant] if name.startswith(f"model.encoders.{dominant}.") and g.dim() >= 2 else g
        assert torch.allclose(after[name], expected), name


def test_generalisation_noise_has_the_unmodulated_gradients_std(synthetic):
    torch.manual_seed(0)
    method = OGMGE(build_model(synthetic), alpha=0.0)  # k = 1: only the noise changes the gradient
    before, after = backward(method, batch(synthetic), ctx())
    key = "model.encoders.m1.net.0.weight"
    assert 0.5 < ((after[key] - before[key]).std() / before[key].std()).item() < 1.5
    assert torch.equal(after["model.fusion.fc.weight"], before["model.fusion.fc.weight"])


def test_no_modulation_outside_the_epoch_window(synthetic):
    torch.manual_seed(0)
    method = OGMGE(build_model(synthetic), alpha=5.0, modulation_starts=1, modulation_ends=2)
    for epoch in (0, 3):
        before, after = backward(method, batch(synthetic), ctx(epoch))
        assert all(torch.equal(after[k], before[k]) for k in before)


@pytest.mark.parametrize("bad, match", [({"alpha": -1.0}, r"alpha must lie in \[0"),
                                        ({"modulation_starts": 3, "modulation_ends": 2}, "modulation_starts <="),
                                        ({"form": "relu"}, "valid: 'code', 'shifted'"),
                                        ({"task": "regression"}, "classification")])
def test_rejects_bad_settings(synthetic, bad, match):
    with pytest.raises(ValueError, match=match):
        OGMGE(build_model(synthetic), **bad)


def test_refuses_one_modality(synthetic):
    with pytest.raises(ValueError, match="at least 2"):
        OGMGE(build_model(synthetic.select(["m0"])))


def _pretrained_joint(splits, steps: int = 10) -> OGMGE:
    """An OGM-GE method whose model was briefly trained jointly, so that m0 (level 3) dominates m1 (level 0.5)."""
    torch.manual_seed(0)
    method = OGMGE(build_model(splits), alpha=0.5)
    opt = torch.optim.Adam(method.parameters(), lr=1e-2)
    for _ in range(steps):
        opt.zero_grad()
        Joint.training_step(method, batch(splits, 96), ctx()).loss.backward()
        opt.step()
    return method


def test_ogm_no_modulation_with_alpha_zero_or_equal_scores():
    assert all(c == 1 for c in ogm_coefficients({"a": torch.tensor(30.0), "b": torch.tensor(1.0)}, 0.0).values())
    assert all(c == 1 for c in ogm_coefficients({"a": torch.tensor(5.0), "b": torch.tensor(5.0)}, 3.0).values())


def test_true_class_scores_sum_the_true_class_probability():
    logits = {"a": torch.tensor([[2.0, 0.0], [0.0, 1.0]])}
    labels = torch.tensor([0, 0])
    expected = F.softmax(logits["a"], -1)[:, 0].sum()
    assert torch.isclose(true_class_scores(logits, labels)["a"], expected)


def test_ogm_ge_training_step_finds_the_dominant_modality(synthetic):
    method = _pretrained_joint(synthetic)
    step = method.training_step(batch(synthetic), ctx())
    assert step.logs["coeff_m0"] < 1 and step.logs["coeff_m1"] == 1
    assert torch.isclose(step.loss, F.cross_entropy(step.output.logits, batch(synthetic)["label"]))


def _modulated(synthetic, coeffs: dict[str, float], epoch: int = 0, **kwargs):
    torch.manual_seed(0)
    method = OGMGE(build_model(synthetic), **kwargs)
    step = method.training_step(batch(synthetic), ctx(epoch))
    step.loss.backward()
    before = grads(method)
    method._coeffs = {m: torch.tensor(c) for m, c in coeffs.items()}
    method.after_backward(ctx(epoch))
    return before, grads(method)


def test_coefficients_scale_only_the_named_encoders_weight_gradients(synthetic):
    before, after = _modulated(synthetic, {"m0": 0.25, "m1": 1.0}, gaussian=False)
    scaled = [k for k in before if k.startswith("model.encoders.m0.") and before[k].dim() >= 2]
    assert scaled
    for k in before:
        if k in scaled:
            assert torch.allclose(after[k], 0.25 * before[k]), k
        else:  # other encoder, fusion head, and biases are untouched
            assert torch.equal(after[k], before[k]), k


def test_generalisation_enhancement_adds_noise_of_the_gradient_scale(synthetic):
    before, after = _modulated(synthetic, {"m0": 1.0, "m1": 1.0}, gaussian=True)
    key = "model.encoders.m1.net.0.weight"
    noise = after[key] - before[key]
    assert not torch.equal(after[key], before[key])
    assert 0.5 < (noise.std() / before[key].std()).item() < 1.5
    assert torch.equal(after["model.fusion.fc.weight"], before["model.fusion.fc.weight"])


def test_ogm_ge_rejects_bad_settings(synthetic):
    with pytest.raises(ValueError, match="alpha"):
        OGMGE(build_model(synthetic), alpha=-1.0)
    with pytest.raises(ValueError, match="classification"):
        OGMGE(build_model(synthetic), task="regression")


def test_alpha_zero_without_ge_leaves_every_gradient_alone(synthetic):
    torch.manual_seed(0)
    method = _pretrained_joint(synthetic)
    method.alpha, method.gaussian = 0.0, False
    step = method.training_step(batch(synthetic), ctx())
    assert step.logs["coeff_m0"] == 1 and step.logs["coeff_m1"] == 1
    step.loss.backward()
    before = grads(method)
    method.after_backward(ctx())
    assert all(torch.equal(g, before[k]) for k, g in grads(method).items())
