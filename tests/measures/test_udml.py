"""UDML's chapter measures: mixed noise levels, rank correlation, robustness, dependency ratio."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mmrepro.measures import udml as measures
from mmrepro.methods import UDML, build
from mmrepro.models import build_model


def test_mixed_levels_are_seeded_per_sample_and_in_range():
    a, b = measures.mixed_levels(500, ("x", "y"), seed=3), measures.mixed_levels(500, ("x", "y"), seed=3)
    assert all(torch.equal(a[m], b[m]) for m in a), "every run sees the same draw"
    assert not torch.equal(a["x"], a["y"]), "levels are independent per modality"
    assert a["x"].min() == 1 and a["x"].max() == 11 and a["x"].float().std() > 2


def test_rank_is_one_for_a_monotone_score_and_zero_for_a_constant():
    level = np.repeat(np.arange(1, 6), 10)
    assert measures._rank(level * 2.0 + 1, level) == pytest.approx(1.0)
    assert measures._rank(-level * 1.0, level) == pytest.approx(-1.0)
    assert measures._rank(np.ones(len(level)), level) == 0.0


def test_robustness_gives_per_item_scores_and_run_level_metrics(synthetic):
    torch.manual_seed(0)
    method = UDML(build_model(synthetic), noise_epoch=0, weight_epoch=0).eval()
    metrics, items = measures.robustness(method, synthetic, levels=[1, 6, 11], weak="m1", unseen={})
    n = len(synthetic.test)
    for name in ("accuracy_mixed", "accuracy_noisy_both", "accuracy_m0_6", "accuracy_m1_11"):
        assert len(items[name]) == n and metrics[name] == pytest.approx(np.mean(items[name]))
    assert -1 <= metrics["rho"] <= 1 and metrics["rho"] == pytest.approx((metrics["rho_m0"] + metrics["rho_m1"]) / 2)
    assert {"score_m0_1", "score_m1_11", "dependency_ratio", "weight_weak", "mixed_level_std"} <= set(metrics)
    assert 0 < metrics["weight_weak"] < 2, "the two weights sum to 2"
    again, _ = measures.robustness(method, synthetic, levels=[1, 6, 11], weak="m1", unseen={})
    assert again == metrics, "every corruption is drawn from a fixed seed"


def test_late_fusion_methods_get_accuracy_but_no_estimator_metrics(synthetic):
    torch.manual_seed(0)
    method = build("noise_augmented", synthetic, fusion="late", method="late").eval()
    metrics, items = measures.robustness(method, synthetic, levels=[1, 11], weak="m1", unseen={})
    assert "accuracy_mixed" in items and "rho" not in metrics and "dependency_ratio" not in metrics


def test_dependency_ratio_is_large_when_the_weak_modality_is_ignored(synthetic):
    torch.manual_seed(0)
    method = UDML(build_model(synthetic), uncertainty=None, dependency=None).eval()
    with torch.no_grad():
        method.model.fusion.fc.weight[:, method.model.fusion.dims["m0"]:] = 0  # the head ignores m1
    assert measures.dependency_ratio(method, synthetic, weak="m1")["dependency_ratio"] > 1e6
