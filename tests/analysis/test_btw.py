"""The BTW chapter's grid and analyses on toy sizes, toy arms and the shipped reported table."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from mmrepro import results
from mmrepro.analysis import btw
from mmrepro.data.mfeat import VIEWS
from mmrepro.verdict import Arm

SIZE = dict(reg_sizes=[30, 10, 10], av_train=40, av_ms=[4, 5], mfeat_ks=[2], mfeat_per_class=[3, 2, 2])
TRAIN, TRAIN_AV = {"epochs": 2}, {"epochs": 3}


def test_mfeat_views_and_names_count_from_either_end():
    assert btw.mfeat_views(2) == list(VIEWS[:2]) and btw.mfeat_views(2, strongest=False) == [VIEWS[-1], VIEWS[-2]]
    assert btw.mfeat_name(len(VIEWS)) == btw.mfeat_name(len(VIEWS), strongest=False) == "mfeat, all 6 views"
    assert btw.mfeat_name(3, strongest=False) == "mfeat, 3 weakest views"


def test_modalities_follow_each_data_set_s_order():
    settings = btw.settings(SIZE, 0.5)
    assert btw.modalities(settings["reg, instance"][0]) == ["strong", "weak", "partial"]
    assert btw.modalities(settings["reg, strong+weak"][0]) == ["strong", "weak"]
    assert btw.modalities(settings["AV, M=5"][0]) == ["audio", "image", "noise", "shuffled", "occluded"]
    assert btw.modalities(settings["mfeat, 2 weakest views"][0]) == [VIEWS[-1], VIEWS[-2]]
    with pytest.raises(ValueError, match="unknown data set 'mnist'"):
        btw.modalities({"name": "mnist"})


def test_settings_mark_the_three_main_ones_and_the_masked_extras():
    settings = btw.settings(SIZE, image_noise=0.5)
    assert [s for s, (_, _, main) in settings.items() if main] == ["reg, +noisy", "AV, +noise", "mfeat, all 6 views"]
    assert settings["AV, M=5"][0]["extras"] == ["noise", "shuffled", "occluded"] and settings["AV, M=5"][1] == "_occluded"
    assert settings["AV, M=4"][1] is None and settings["AV, +occluded"][1] == "_occluded"
    assert settings["reg, instance"][1] == "_informative" and settings["AV, +noise"][0]["image_noise"] == 0.5
    assert settings["mfeat, 2 weakest views"][0]["views"] == btw.mfeat_views(2, strongest=False)
    with pytest.raises(KeyError, match=r"lacks \['av_ms'\]"):
        btw.settings({k: v for k, v in SIZE.items() if k != "av_ms"}, 0.5)


def test_plan_gives_confirmatory_arms_every_seed_and_keeps_the_longer_list():
    plan = btw.plan(SIZE, seeds=[0, 1, 2], explore=[0])
    assert plan["reg, +noisy", "BTW"] == plan["reg, +noisy", "BTW, inverse KL"] == [0, 1, 2]
    assert plan["AV, +noise", "BTW, inverse KL"] == [0] and ("AV, +noise", "BTW, L1 loss, MAE-driven alpha") not in plan
    assert plan["AV, audio+image", "MoE"] == [0, 1, 2], "a motivation arm keeps its seeds when it is also exploratory"
    assert plan["AV, audio+image", "BTW"] == plan["AV, M=5", "MoE"] == [0]


def test_specs_attach_the_measures_that_apply_and_the_right_training():
    settings = btw.settings(SIZE, 0.5)
    reg = btw.specs_for("reg, +noisy", "BTW", [0, 1], settings, TRAIN, TRAIN_AV)
    assert [s.seed for s in reg] == [0, 1] and reg[0].train == TRAIN and reg[0].arm == "reg, +noisy: BTW"
    assert reg[0].measures == ("mmrepro.measures.btw:sentiment", "mmrepro.measures.btw:token_weights",
                               "mmrepro.measures.btw:missing")
    occluded = btw.specs_for("AV, +occluded", "MoE", [0], settings, TRAIN, TRAIN_AV)[0]
    assert occluded.measures == (("mmrepro.measures.btw:token_weights", {"mask": "_occluded"}),)
    assert occluded.train == TRAIN_AV and occluded.method_kwargs == {"weighting": "none"}
    mfeat = btw.specs_for("mfeat, all 6 views", "KL-only", [0], settings, TRAIN, TRAIN_AV)[0]
    assert mfeat.method_kwargs == {"weighting": "kl", "uid_key": "_row"}
    assert btw.specs_for("reg, +noisy", "concat", [0], settings, TRAIN, TRAIN_AV)[0].measures == (
        "mmrepro.measures.btw:sentiment",)
    plan = btw.plan(SIZE, [0, 1], [0])
    assert len(btw.specs(plan, settings, TRAIN, TRAIN_AV)) == sum(map(len, plan.values()))


def _runs(rows) -> pd.DataFrame:
    return btw.run_table(pd.DataFrame(rows, columns=["arm", "seed", "accuracy", "mae"]))


def test_run_table_splits_the_arm_into_setting_and_method():
    runs = _runs([("AV, +noise: BTW, inverse KL", 0, 0.5, np.nan)])
    assert (runs.setting[0], runs.method[0]) == ("AV, +noise", "BTW, inverse KL")
    with pytest.raises(KeyError, match="'arm' column"):
        btw.run_table(pd.DataFrame({"seed": [0]}))


def test_scaling_rows_place_each_run_at_its_number_of_modalities():
    runs = _runs([("mfeat, all 6 views: BTW", 0, 0.9, np.nan), ("AV, M=5: MoE", 0, 0.6, np.nan),
                  ("AV, +noise: MoE", 0, 0.7, np.nan), ("AV, +noise: late", 0, 0.8, np.nan)])
    scaling = btw.scaling_rows(runs, SIZE)
    assert sorted(zip(scaling.data, scaling.M, scaling.curve)) == [
        ("AV-Digits", 3, "MoE, extras in order"), ("AV-Digits", 5, "MoE, extras in order"),
        ("mfeat", 6, "BTW, strongest first"), ("mfeat", 6, "BTW, weakest first")]


def _arm(**scores) -> Arm:
    return Arm([0, 1], {k: np.asarray(v, dtype=float) for k, v in scores.items()})


def test_weight_table_and_gaps_average_over_seeds():
    arms = {"reg, instance: BTW": _arm(weight_strong=[1.2, 1.4], weight_partial=[0.8, 0.6], weight_gap_partial=[0.1, 0.3]),
            "AV, +occluded: BTW": _arm(weight_gap_occluded=[-0.2, -0.2])}
    arms["reg, instance: BTW"].scores = {k: arms["reg, instance: BTW"].scores[k] for k in
                                         ("weight_partial", "weight_gap_partial", "weight_strong")}  # any record order
    table = btw.weight_table(arms, "reg, instance", ["KL-only", "BTW"], btw.settings(SIZE, 0.5))
    assert table.loc["BTW"].to_dict() == {"strong": 1.3, "partial": 0.7} and "KL-only" not in table.index
    assert list(table.columns) == ["strong", "partial"], "columns follow the data's modality order"
    gaps = btw.weight_gaps(arms)
    assert gaps.loc["reg, instance: BTW", "mean gap"] == 0.2 and gaps.loc["AV, +occluded: BTW", "std over seeds"] == 0
    assert list(gaps.seeds) == [2, 2]
    with pytest.raises(KeyError, match=r"no arm of 'reg, \+noisy'"):
        btw.weight_table(arms, "reg, +noisy", ["BTW"], btw.settings(SIZE, 0.5))


def test_spread_compares_the_across_seed_spread_of_btw_and_the_moe():
    rows = []
    for setting, metric in [("reg, +noisy", "mae"), ("AV, +noise", "accuracy"), ("mfeat, all 6 views", "accuracy")]:
        for seed, (b, m) in enumerate([(0.50, 0.4), (0.51, 0.6), (0.49, 0.5), (0.50, 0.7), (0.50, 0.3)]):
            rows += [(f"{setting}: BTW", seed, b, b), (f"{setting}: MoE", seed, m, m)]
    table = btw.spread(_runs(rows))
    assert list(table.index) == ["regression MAE", "AV-Digits accuracy", "mfeat accuracy"]
    assert (table["std BTW"] < table["std MoE"]).all() and (table.seeds == 5).all()


def test_claims_take_half_the_reported_effects_and_preconditions_need_headroom():
    claims = btw.claims(results.reported("btw"))
    assert len(claims) == 9 and sum(c.kind == "sanity" for c in claims) == 3
    assert all(c.delta > 0 for c in claims if c.kind == "claim")
    assert claims[0].delta == claims[3].delta and claims[1].delta == claims[2].delta
    arms = {"AV, +noise: MoE": _arm(accuracy=[[1.0, 1.0], [1.0, 1.0]]),
            "mfeat, all 6 views: MoE": _arm(accuracy=[[0.5, 0.5], [0.5, 0.5]])}
    pre = btw.preconditions(arms, claims, seeds=[0, 1])
    assert list(pre) == [claims[4].name, claims[5].name]
    assert pre[claims[4].name] == (False, "the MoE leaves 0.0 points below 100%")
    assert pre[claims[5].name] == (True, "the MoE leaves 50.0 points below 100%")
