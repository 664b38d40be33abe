"""IIBalance on toy tensors: budgets, prototypes, the budget-gated trigger, the schedule, the gate."""

from __future__ import annotations

import math

import pytest
import torch

from mmrepro import evaluate
from mmrepro.data import make_synthetic
from mmrepro.methods.iibalance import (IIBalance, budget_from_predictions, budget_gate, budget_prior, ema_update,
                                       estimate_budgets, fit_temperature, gate_fuse, label_entropy, linear_schedule,
                                       normalised_entropy, prototype_logits)
from mmrepro.models.multimodal import build_model
from mmrepro.train import TrainConfig, fit


CFG = TrainConfig(epochs=3, batch_size=32, lr=3e-3, progress=False)


@pytest.fixture(scope="module")
def informative_and_noise():
    """m0 carries the class, m1 is pure noise (level 0)."""
    return make_synthetic(levels=(3.0, 0.0), dim=8, num_classes=4, sizes=(192, 96, 64), seed=0)


def test_budget_of_an_uninformative_modality_is_near_zero(informative_and_noise):
    s = informative_and_noise
    torch.manual_seed(0)
    table = estimate_budgets(build_model(s, "mlp", "sum"), s, CFG)
    assert table.loc["m0", "vinfo"] > 0.5 and table.loc["m0", "accuracy"] > 0.5
    assert table.loc["m1", "vinfo"] < 0.1 and table.loc["m1", "accuracy"] < 0.15


def test_budget_estimators_on_known_predictions():
    labels = torch.arange(4).repeat(25)
    h = label_entropy(labels, 4)
    assert h == pytest.approx(math.log(4))
    perfect = budget_from_predictions(torch.nn.functional.one_hot(labels, 4).float() * 50, labels, h)
    assert perfect["vinfo"] == pytest.approx(math.log(4), abs=1e-3) and perfect["accuracy"] == pytest.approx(1.0)
    chance = budget_from_predictions(torch.zeros(100, 4), labels, h)
    assert chance["vinfo"] == pytest.approx(0.0, abs=1e-6) and chance["accuracy"] == 0.0


def test_prior_is_proportional_to_budgets_and_rejects_negative():
    assert budget_prior({"a": 3.0, "b": 1.0}) == pytest.approx({"a": 0.75, "b": 0.25})
    assert budget_prior({"a": 0.0, "b": 0.0}) == pytest.approx({"a": 0.5, "b": 0.5})
    with pytest.raises(ValueError, match=">= 0"):
        budget_prior({"a": -1.0, "b": 1.0})


def test_trigger_is_zero_for_the_anchor_and_for_a_modality_meeting_its_budget():
    rho_star = torch.tensor([1.0, 0.5, 0.5])
    rho = torch.tensor([1.0, 0.6, 0.25])  # m1 exceeds its budgeted share, m2 falls short by half
    g = budget_gate(rho, rho_star, anchor=0)
    assert g[0] == 0 and g[1] == 0 and g[2] == pytest.approx(0.5)
    forced = budget_gate(rho, rho_star, anchor=0, mode="forced")  # PMR-like target 1: both weak ones fire
    assert forced[0] == 0 and forced[1] > 0 and forced[2] > 0
    assert budget_gate(rho, rho_star, 0, "always").tolist() == [0, 1, 1]
    with pytest.raises(ValueError, match="trigger"):
        budget_gate(rho, rho_star, 0, "sometimes")


def test_linear_schedule_ramps_then_saturates():
    values = [linear_schedule(e, start=2, ramp=4, lam_max=2.0) for e in range(8)]
    assert values == pytest.approx([0, 0, 0.5, 1.0, 1.5, 2.0, 2.0, 2.0])


def test_prototypes_follow_class_means():
    torch.manual_seed(0)
    centres = torch.randn(3, 5) * 4
    protos, seen = torch.zeros(3, 5), torch.zeros(3, dtype=torch.bool)
    for _ in range(60):
        y = torch.randint(0, 3, (32,))
        ema_update(protos, seen, centres[y] + 0.1 * torch.randn(32, 5), y, momentum=0.9)
    assert seen.all()
    assert torch.allclose(protos, centres, atol=0.1)
    logits = prototype_logits(centres, protos, tau=0.1)
    assert (logits.argmax(-1) == torch.arange(3)).all()


def test_unseen_class_keeps_its_prototype():
    protos, seen = torch.zeros(3, 2), torch.zeros(3, dtype=torch.bool)
    ema_update(protos, seen, torch.tensor([[1.0, 1.0]]), torch.tensor([0]), 0.5)
    assert seen.tolist() == [True, False, False] and protos[1].abs().sum() == 0


def test_temperature_and_gate_fusion():
    torch.manual_seed(0)
    labels = torch.randint(0, 5, (400,))
    logits = torch.nn.functional.one_hot(labels, 5).float() * 2 + torch.randn(400, 5)
    assert fit_temperature(logits * 10, labels) > 3  # over-confident logits are cooled
    probs = torch.stack([torch.full((4, 3), 1 / 3), torch.eye(3)[[0, 1, 2, 0]]])
    assert torch.allclose(normalised_entropy(probs[0]), torch.ones(4))
    w, fused = gate_fuse(probs, torch.zeros(4, 2))
    assert torch.allclose(w.sum(-1), torch.ones(4)) and torch.allclose(fused.sum(-1), torch.ones(4))
    experts = torch.softmax(torch.randn(2, 6, 3), -1)
    _, product = gate_fuse(experts, torch.zeros(6, 2), "product")  # equal weights: the plain sum of log-probs
    assert torch.allclose(product, experts.log().sum(0).softmax(-1), atol=1e-5)
    with pytest.raises(ValueError, match="fusion form"):
        gate_fuse(experts, torch.zeros(6, 2), "median")


@pytest.mark.parametrize("gate", ["bayes", "mlp"])
def test_gate_weights_sum_to_one_and_shift_away_from_a_corrupted_modality(gate):
    s = make_synthetic(levels=(2.0, 2.0), dim=8, num_classes=4, sizes=(192, 96, 96), seed=1)
    torch.manual_seed(0)
    budgets = {"m0": {"vinfo": 1.0}, "m1": {"vinfo": 1.0}}
    method = IIBalance(build_model(s, "mlp", "sum"), budgets=budgets, gate=gate, start=0, ramp=1,
                      gate_steps=60, fusion_form="mixture")
    fit(method, s, CFG)
    clean = evaluate.predict(method, s.test)
    # m0 replaced by draws of the same scale that carry no class: its predictions turn uncertain
    noisy = evaluate.predict(method, s.test, transform=lambda b: {**b, "m0": torch.randn_like(b["m0"])})
    for p in (clean, noisy):
        assert torch.allclose(p.weights["m0"] + p.weights["m1"], torch.ones(len(s.test)), atol=1e-5)
    assert noisy.weights["m0"].mean() < clean.weights["m0"].mean() - 0.05
    # with one modality dropped the other gets all the weight
    alone = evaluate.predict(method, s.test, drop=["m0"])
    assert torch.allclose(alone.weights["m1"], torch.ones(len(s.test)))


def test_training_fires_only_for_the_weak_modality_and_logs_it(informative_and_noise):
    s = make_synthetic(levels=(3.0, 1.0), dim=8, num_classes=4, sizes=(192, 96, 64), seed=0)
    torch.manual_seed(0)
    method = IIBalance(build_model(s, "mlp", "sum"), start=0, ramp=1)
    result = fit(method, s, CFG)
    assert int(method.anchor) == 0 and method.prior["m0"] > method.prior["m1"]
    assert (result.history["train_fired_m0"] == 0).all() and (result.history["train_gate_m0"] == 0).all()
    assert {"train_fired_m1", "train_rho_m1", "train_align"} <= set(result.history.columns)


def test_bad_arguments_are_named():
    s = make_synthetic(levels=(1.0, 1.0), dim=4, num_classes=3, sizes=(30, 15, 15), seed=0)
    model = build_model(s, "mlp", "sum")
    with pytest.raises(ValueError, match="estimator"):
        IIBalance(model, estimator="entropy")
    with pytest.raises(ValueError, match="gate"):
        IIBalance(model, gate="attention")
    with pytest.raises(ValueError, match="rows"):
        IIBalance(model, budgets={"m0": {"vinfo": 1.0}})
