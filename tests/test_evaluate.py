"""Evaluation on toy methods whose answers are known: metrics, calibration, Shapley, sweeps, probes."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from mmrepro.data import DictDataset, Splits, make_synthetic
from mmrepro.evaluate import (Predictions, collapse_rate, features, linear_probe, linear_probes_predictions, metrics,
                              modality_subsets, predict, robustness_sweep, seed_variance, shapley, shapley_values,
                              subset_accuracies)
from mmrepro.models import Output

C = 4


class VoteSum(nn.Module):
    """A toy method: each modality's tensor is its logits (its 'vote'); the fused logits are their sum."""

    def __init__(self):
        super().__init__()
        self.anchor = nn.Parameter(torch.zeros(1))  # gives the toy a device

    def predict(self, batch):
        present = {m: batch[m].float() for m in ("a", "b", "c") if m in batch}
        return Output(sum(present.values()), present, present)


def _votes(n: int = 400, seed: int = 0) -> DictDataset:
    """'a' votes for the true class on 80% of rows, 'b' on 50%, 'c' always votes for class 0."""
    gen = torch.Generator().manual_seed(seed)
    y = torch.randint(C, (n,), generator=gen)

    def vote(p_right: float, strength: float) -> torch.Tensor:
        wrong = (y + torch.randint(1, C, (n,), generator=gen)) % C
        pick = torch.where(torch.rand(n, generator=gen) < p_right, y, wrong)
        return strength * F.one_hot(pick, C).float()

    return DictDataset({"a": vote(0.8, 2.0), "b": vote(0.5, 1.0), "c": 0.5 * F.one_hot(torch.zeros_like(y), C).float(),
                        "label": y}, ("a", "b", "c"))


def test_predict_collects_fused_and_unimodal_logits_and_drops():
    ds = _votes()
    p = predict(VoteSum(), ds, batch_size=64)
    assert p.logits.shape == (400, C) and set(p.unimodal_logits) == {"a", "b", "c"} and p.weights is None
    assert torch.equal(p.labels, ds.tensors["label"])
    dropped = predict(VoteSum(), ds, drop=["b", "c"])
    assert set(dropped.unimodal_logits) == {"a"} and torch.equal(dropped.logits, ds.tensors["a"])


def test_metrics_of_a_toy():
    ds = _votes()
    m = metrics(predict(VoteSum(), ds.select(["a"])))
    expected = (ds.tensors["a"].argmax(1) == ds.tensors["label"]).float().mean().item()
    assert m["accuracy"] == pytest.approx(expected) and m["accuracy_a"] == m["accuracy"]
    assert 0.7 < m["accuracy"] < 0.9 and 0 < m["macro_f1"] <= 1
    perfect = Predictions(F.one_hot(ds.tensors["label"], C).float() * 10, {}, ds.tensors["label"])
    assert metrics(perfect)["accuracy"] == 1.0 and metrics(perfect)["macro_f1"] == 1.0
    reg = metrics(Predictions(torch.tensor([[1.0], [3.0]]), {}, torch.tensor([[0.0], [1.0]])), "regression")
    assert reg == pytest.approx({"mse": 2.5, "mae": 1.5})


def test_ece_is_zero_when_calibrated_and_large_when_overconfident():
    labels = torch.tensor([0] * 80 + [1] * 20)
    calibrated = torch.log(torch.tensor([0.8, 0.2])).expand(100, 2)
    assert metrics(Predictions(calibrated, {}, labels))["ece"] == pytest.approx(0.0, abs=1e-6)
    overconfident = torch.log(torch.tensor([0.99, 0.01])).expand(100, 2)
    coin = torch.tensor([0, 1] * 50)
    assert metrics(Predictions(overconfident, {}, coin))["ece"] == pytest.approx(0.49, abs=1e-4)


def _value(ds: DictDataset, subset: tuple[str, ...]) -> float:
    if not subset:
        return torch.bincount(ds.tensors["label"]).max().item() / len(ds)
    p = predict(VoteSum(), ds, drop=[m for m in ("a", "b", "c") if m not in subset])
    return (p.logits.argmax(1) == p.labels).float().mean().item()


def test_shapley_values_sum_to_the_full_model_gain():
    ds = _votes()
    phi = shapley(VoteSum(), ds, ["a", "b", "c"])
    assert sum(phi.values()) == pytest.approx(_value(ds, ("a", "b", "c")) - _value(ds, ()), abs=1e-9)
    assert phi["a"] > phi["b"] > phi["c"]


def test_shapley_of_two_modalities_by_hand():
    ds = _votes()
    phi = shapley(VoteSum(), ds, ["a", "b"])
    v = {s: _value(ds, s) for s in [(), ("a",), ("b",), ("a", "b")]}
    assert phi["a"] == pytest.approx(0.5 * (v[("a",)] - v[()]) + 0.5 * (v[("a", "b")] - v[("b",)]))
    assert phi["b"] == pytest.approx(0.5 * (v[("b",)] - v[()]) + 0.5 * (v[("a", "b")] - v[("a",)]))


def test_shapley_takes_the_full_sets_accuracy_from_validation_and_saves_its_pass():
    ds = _votes()
    calls = []

    class Counting(VoteSum):
        def predict(self, batch):
            calls.append(tuple(m for m in ("a", "b", "c") if m in batch))
            return super().predict(batch)

    plain = shapley(Counting(), ds, ["a", "b", "c"])
    assert ("a", "b", "c") in calls
    calls.clear()
    reused = shapley(Counting(), ds, ["a", "b", "c"], full=_value(ds, ("a", "b", "c")))
    assert ("a", "b", "c") not in calls and len(calls) == 6, "only the 6 proper subsets are predicted"
    assert reused == pytest.approx(plain)


def test_shapley_values_accept_tensors_and_a_nonzero_empty_coalition():
    value = {frozenset(): torch.tensor(1.0), frozenset("a"): torch.tensor(3.0), frozenset("b"): torch.tensor(2.0),
             frozenset("ab"): torch.tensor(6.0)}
    phi = shapley_values(value, ["a", "b"])
    assert float(phi["a"]) == pytest.approx(0.5 * (3 - 1) + 0.5 * (6 - 2))
    assert float(phi["a"] + phi["b"]) == pytest.approx(6 - 1), "efficiency: the values sum to v(all) - v(empty)"


def _vote_splits() -> Splits:
    ds = _votes(800).select(["a", "b"])
    return Splits("votes", ds, ds, ds, num_classes=C, valid_range={"a": None, "b": None})


def test_robustness_sweep_shape_and_monotone_degradation():
    levels = [0.0, 1.0, 2.0, 4.0]
    table = robustness_sweep(VoteSum(), _vote_splits(), "gaussian", levels)
    assert list(table.columns) == ["target", "level", "accuracy", "macro_f1"]
    assert len(table) == 3 * len(levels) and list(table["target"].unique()) == ["a", "b", "a+b"]
    for target, rows in table.groupby("target"):
        acc = rows.sort_values("level")["accuracy"].tolist()
        assert all(later < earlier for earlier, later in zip(acc, acc[1:])), (target, acc)
        assert acc[-1] < 0.5
    again = robustness_sweep(VoteSum(), _vote_splits(), "gaussian", levels)
    assert table.equals(again), "sweeps draw the same corruption every call"
    missing = robustness_sweep(VoteSum(), _vote_splits(), "missing", [0.0], targets=[["a"]])
    b_alone = _value(_votes(800).select(["b"]), ("b",))
    assert missing["accuracy"].item() == pytest.approx(b_alone, abs=1e-9)  # a zeroed: b decides


def test_predict_with_a_transform_leaves_the_global_rng_alone():
    from mmrepro.data import GaussianNoise

    state = torch.get_rng_state()
    p1 = predict(VoteSum(), _votes(), transform=GaussianNoise("a", std=1.0), seed=7)
    assert torch.equal(torch.get_rng_state(), state)
    p2 = predict(VoteSum(), _votes(), transform=GaussianNoise("a", std=1.0), seed=7)
    assert torch.equal(p1.logits, p2.logits)


def test_features_and_linear_probe_on_separable_features():
    splits = make_synthetic(levels=(8.0, 0.0), dim=8, num_classes=3, sizes=(300, 30, 300), seed=1)

    class Identity(VoteSum):
        def predict(self, batch):
            feats = {m: batch[m] for m in ("m0", "m1") if m in batch}
            return Output(sum(feats.values()), feats, feats)

    feats = features(Identity(), splits.test)
    assert torch.equal(feats["m0"], splits.test.tensors["m0"])
    assert linear_probe(Identity(), splits, "m0") > 0.97
    assert linear_probe(Identity(), splits, "m1") < 0.5  # pure noise: near chance (1/3)
    both = linear_probes_predictions(Identity(), splits)
    assert set(both) == {"m0", "m1"}
    assert (both["m0"] == splits.test.tensors["label"].numpy()).mean() == pytest.approx(linear_probe(Identity(), splits, "m0"))


def test_subset_accuracies_cover_every_subset_and_match_the_shapley_values():
    ds = _votes().select(["a", "b"])
    acc = subset_accuracies(VoteSum(), ds, ["a", "b"])
    assert list(acc) == ["a", "b", "a+b"], "singletons first, the full set last"
    assert acc["a"] == pytest.approx(_value(ds, ("a",))) and acc["a+b"] == pytest.approx(_value(ds, ("a", "b")))
    assert modality_subsets(["a", "b", "c"])[-1] == ("a", "b", "c") and len(modality_subsets(["a", "b", "c"])) == 7
    assert collapse_rate({"a": 0.4, "b": 0.6, "a+b": 0.8}, ["a", "b"]) == pytest.approx(100 * (0.5 + 0.25) / 2)


def test_seed_variance_is_zero_for_identical_runs_and_nan_for_one():
    logits = torch.tensor([[2.0, 0.0], [0.0, 1.0]])
    same = Predictions(logits, {}, torch.tensor([0, 1]))
    assert seed_variance([same, same]) == 0.0 and seed_variance([same]) != seed_variance([same])  # NaN
    other = Predictions(torch.tensor([[1.0], [3.0]]), {}, torch.zeros(2, 1))
    base = Predictions(torch.tensor([[1.0], [1.0]]), {}, torch.zeros(2, 1))
    assert seed_variance([base, other], "regression") == pytest.approx((0.0 + 2.0) / 2)  # var of (1, 3) is 2


def test_collapse_rate():
    acc = {"a": 0.5, "b": 0.8, "a+b": 1.0}
    assert collapse_rate(acc, ["a", "b"]) == pytest.approx(35.0)
