"""IIBalance's chapter measures: test halves, calibrated sums, scores, trigger rate, view arms, gate control and budgets."""

from __future__ import annotations

import math

import pytest
import torch

from mmrepro import evaluate
from mmrepro.data import make_synthetic
from mmrepro.measures import iibalance as measures
from mmrepro.methods.iibalance import IIBalance
from mmrepro.models.multimodal import build_model
from mmrepro.train import TrainConfig, fit


CFG = TrainConfig(epochs=3, batch_size=32, lr=3e-3, progress=False)


def test_test_halves_are_the_even_and_odd_items():
    s = make_synthetic(levels=(1.0, 1.0), dim=4, num_classes=3, sizes=(30, 15, 11), seed=0)
    calib, held = measures.halves(s.test)
    assert len(calib) == 6 and len(held) == 5
    assert torch.equal(calib.tensors["m0"], s.test.tensors["m0"][0::2])
    assert torch.equal(held.tensors["m0"], s.test.tensors["m0"][1::2])


def test_calibrated_sum_divides_each_modality_then_the_sum():
    a, b = torch.tensor([[2.0, 0.0, -2.0]]), torch.tensor([[0.0, 4.0, 0.0]])
    p = evaluate.Predictions(a + b, {"m0": a, "m1": b}, torch.tensor([0]))
    expected = ((a / 1.0 + b / 2.0) / 0.5).log_softmax(-1)
    assert torch.allclose(measures.calibrated_sum(p, [1.0, 2.0], 0.5), expected)


def test_fitted_sum_temperature_cools_overconfident_heads():
    labels = torch.arange(4).repeat(50)
    right = torch.nn.functional.one_hot(labels, 4).float()
    wrong = torch.nn.functional.one_hot((labels + 1) % 4, 4).float()
    mixed = torch.where((torch.arange(200) % 4 == 0).unsqueeze(1), wrong, right) * 20  # 75 % right, all sure
    p = evaluate.Predictions(2 * mixed, {"m0": mixed, "m1": mixed}, labels)
    temps, fused = measures.fit_calibrated_sum(p)
    assert all(t > 5 for t in temps) and fused > 0


def test_scores_of_certain_and_of_uniform_predictions():
    labels = torch.tensor([0, 1, 2, 0])
    sure = torch.nn.functional.one_hot(labels, 3).float().clamp_min(1e-9).log()
    metrics, items = measures.scores(sure, labels)
    assert items["correct"] == [1.0] * 4 and max(items["brier"]) < 1e-6 and metrics["ece"] < 1e-6
    _, flat = measures.scores(torch.full((4, 3), math.log(1 / 3)), labels)
    assert flat["brier"] == pytest.approx([2 / 3] * 4)


def test_trigger_rate_averages_the_fired_share_from_an_epoch():
    record = {"arm": "a", "history": [{"epoch": e, "train_fired_m1": f} for e, f in enumerate([1.0, 1.0, 0.5, 0.0])]}
    assert measures.trigger_rate(record, "m1", start=2) == pytest.approx(0.25)
    with pytest.raises(ValueError, match="from epoch 9"):
        measures.trigger_rate(record, "m1", start=9)


def test_view_arms_turn_two_readings_of_one_run_into_two_arms():
    runs = [{"arm": "x", "seed": s, "metrics": {"ece@gate": 0.1, "ece@tsum": 0.2}, "items": {"c@gate": [1.0]}}
            for s in (0, 1)] + [{"arm": "y", "seed": 0, "metrics": {}, "items": {}}]
    out = measures.view_arms(runs, "x", {"gate": {"ece": "ece@gate", "c": "c@gate"}, "sum": {"ece": "ece@tsum"}})
    assert [(r["arm"], r["seed"]) for r in out] == [("gate", 0), ("sum", 0), ("gate", 1), ("sum", 1)]
    assert out[0]["metrics"] == {"ece": 0.1} and out[0]["items"] == {"c": [1.0]} and out[1]["metrics"] == {"ece": 0.2}
    with pytest.raises(KeyError, match="ece@none"):
        measures.view_arms(runs, "x", {"z": {"ece": "ece@none"}})


def test_gate_control_and_budgets_measure_a_trained_iibalance():
    s = make_synthetic(levels=(3.0, 1.0), dim=8, num_classes=4, sizes=(192, 96, 64), seed=0)
    torch.manual_seed(0)
    method = IIBalance(build_model(s, "mlp", "sum"), start=0, ramp=1, fusion_form="mixture")
    fit(method, s, CFG)
    metrics, items = measures.gate_control(method, s, noise=3.0)
    for key in ("correct", "brier", "correct_noisy", "brier_noisy"):
        assert len(items[f"{key}@gate"]) == len(items[f"{key}@tsum"]) == 32
    assert {"ece@gate", "ece@tsum", "ece_noisy@gate", "anchor_weight", "anchor_weight_noisy"} <= set(metrics)
    assert 0.5 < metrics["anchor_weight"] <= 1  # the anchor (m0, the larger budget) leads the gate
    budgets, _ = measures.budgets(method, s)
    assert budgets["budget_vinfo_m0"] > budgets["budget_vinfo_m1"] and budgets["anchor_vinfo"] == 0.0
    method.configure_gate(s.val, gate="none")
    with pytest.raises(ValueError, match="gate on"):
        measures.gate_control(method, s)
