"""MoIR's chapter measures: contributions, shares and channel agreement."""

from __future__ import annotations

import pytest
import torch

from mmrepro.methods.moir import MoIR

from token_data import toy_splits


def test_contributions_measure_reports_drops_shares_and_channel_agreement():
    from mmrepro.measures.moir import contributions

    splits = toy_splits(30)
    splits.info["test_randomised"] = splits.test
    splits.valid_range["image"] = (0.0, 1.0)
    torch.manual_seed(0)
    method = MoIR.for_splits(splits, encoder_kwargs={"dim": 16, "causal": True, "routing": {"ratio": 0.25, "rank": 2}})
    metrics, items = contributions(method, splits)
    assert set(items) == {f"{k}@trained" for k in ("accuracy", "accuracy_randomised", "drop_image", "drop_text")}
    assert all(len(v) == 30 for v in items.values())
    assert all(v in (-1.0, 0.0, 1.0) for v in items["drop_image@trained"])
    assert metrics["share_image@trained"] + metrics["share_text@trained"] == pytest.approx(1.0)
    assert metrics["shift_image_degraded@trained"] == pytest.approx(
        metrics["share_image@trained"] - metrics["share_image_image_degraded@trained"])
    assert all(0 <= metrics[f"{k}_{m}"] <= 1 for k in ("agree", "overlap") for m in ("image", "text"))
    assert metrics["agree_image"] <= metrics["overlap_image"]


def test_svd_and_variance_pick_the_same_channels_at_full_rank():
    from mmrepro.measures.moir import channel_agreement

    splits = toy_splits(20)
    method = MoIR.for_splits(splits, encoder_kwargs={"dim": 16, "routing": {"ratio": 0.25, "rank": 64}})
    assert channel_agreement(method, splits.test) == {"agree_image": 1.0, "agree_text": 1.0, "overlap_image": 1.0,
                                                       "overlap_text": 1.0}