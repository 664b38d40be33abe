"""The BTW chapter's measures on toy models: sentiment items, token weights, missing modalities, variance ratio."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mmrepro.data.many_modalities import make_trimodal_regression
from mmrepro.measures import btw as measures
from mmrepro.methods.btw import BTW
from mmrepro.models.moe import build_moe_model
from mmrepro.verdict import Arm


class Constant(torch.nn.Module):
    """A 'method' predicting fixed values, to pin the measures' arithmetic."""

    def __init__(self, values):
        super().__init__()
        self.values = torch.as_tensor(values, dtype=torch.float32)
        self.dummy = torch.nn.Parameter(torch.zeros(1))

    def predict(self, batch):
        from mmrepro.models.multimodal import Output

        n = len(batch["label"])
        return Output(self.values[:n].view(n, 1), {}, {}, None)


def test_sentiment_items_average_to_the_community_metrics():
    splits = make_trimodal_regression("noise", sizes=(10, 5, 4), seed=0)
    labels = splits.test.tensors["label"].view(-1)
    method = Constant(labels + torch.tensor([0.4, -0.6, 1.0, 0.0]))
    metrics, items = measures.sentiment(method, splits)
    assert np.mean(items["MAE"]) == pytest.approx(0.5, abs=1e-6)
    for key in ("acc2", "acc5", "acc7"):
        assert np.mean(items[key]) == pytest.approx(metrics[key])
    assert set(metrics) == {"corr", "acc2", "acc5", "acc7", "f1"}


def test_token_weights_are_one_for_an_unweighted_model_and_the_gap_uses_the_mask():
    splits = make_trimodal_regression("instance", sizes=(30, 10, 20), seed=0)
    method = BTW(build_moe_model(splits, dim=8, num_experts=4), task="regression", weighting="none")
    metrics, items = measures.token_weights(method, splits, mask="_informative")
    assert metrics["weight_partial"] == 1.0 and len(items["weight_strong"]) == 20
    assert metrics["weight_gap_partial"] == 0.0
    with pytest.raises(KeyError, match="mask '_nope'"):
        measures.token_weights(method, splits, mask="_nope")


def test_missing_scores_each_modality_removed():
    splits = make_trimodal_regression("noise", sizes=(30, 10, 20), seed=0)
    method = BTW(build_moe_model(splits, dim=8, num_experts=4), task="regression", weighting="none")
    metrics, items = measures.missing(method, splits)
    assert set(metrics) == {"MAE_without_strong", "MAE_without_weak", "MAE_without_noisy"}
    assert all(len(v) == 20 for v in items.values())


def test_variance_ratio_interval_matches_the_f_distribution():
    a, b = [1.0, 2.0, 3.0], [0.0, 2.0, 4.0, 6.0]
    out = measures.variance_ratio(a, b)
    assert out["ratio"] == pytest.approx(1.0 / (20 / 3))
    assert out["low"] < out["ratio"] < out["high"]
    assert measures.spread_verdict({"low": 0.1, "high": 0.9}) == "smaller spread"
    assert measures.spread_verdict({"low": 1.1, "high": 3.0}) == "larger spread"
    assert measures.spread_verdict({"low": 0.5, "high": 2.0}) == "no difference shown"
    with pytest.raises(ValueError, match="at least two seeds"):
        measures.variance_ratio([1.0], b)


def test_versus_pairs_by_seed_and_marks_missing_metrics():
    arms = {"c": Arm([0, 1, 2], {"m": np.array([0.5, 0.6, 0.7])}, [True] * 3),
            "t": Arm([0, 1, 2], {"m": np.array([0.6, 0.7, 0.8])}, [True] * 3)}
    table = measures.versus(arms, "c", ["t", "absent"], ["m"])
    assert table.loc["t", "m vs c"].startswith("+0.1 [+0.1, +0.1]")
    assert table.loc["absent", "m"] == "—"
