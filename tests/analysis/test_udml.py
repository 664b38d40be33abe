"""The UDML chapter's record analysis: premises, the setting search, paired descriptions, rank tables, deltas."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from mmrepro import verdict
from mmrepro.analysis import udml
from mmrepro.results import reported


def _runs(specs: dict[str, tuple[float, float, float, float]]) -> pd.DataFrame:
    """Two seeds per arm: (accuracy, dependency_ratio, weight_weak, mixed_level_std)."""
    rows = [{"arm": arm, "seed": s, "accuracy": a, "dependency_ratio": r, "weight_weak": w, "mixed_level_std": m}
            for arm, (a, r, w, m) in specs.items() for s in (0, 1)]
    return pd.DataFrame(rows)


T = udml.Thresholds()


def test_premises_are_means_of_the_named_arms():
    runs = _runs({"static recipe": (0.9, 2.5, 1.0, 3.0), "EAU": (0.5, 9.0, 0.8, 9.0)})
    p = udml.premises(runs, "static recipe", "EAU")
    assert p == {"static clean accuracy": 0.9, "dependency ratio": 2.5, "EAU weight of the weak audio": 0.8,
                 "spread of mixed test levels": 3.0}
    assert all(udml.holds(p, T).values())


@pytest.mark.parametrize("change, broken", [({"dependency ratio": 1.5}, "imbalance"),
                                            ({"EAU weight of the weak audio": 0.95}, "dual suppression"),
                                            ({"spread of mixed test levels": 0.0}, "per-sample noise"),
                                            ({"static clean accuracy": 0.99}, "off the ceiling")])
def test_each_premise_fails_alone_at_its_threshold(change, broken):
    p = {"static clean accuracy": 0.9, "dependency ratio": 2.5, "EAU weight of the weak audio": 0.8,
         "spread of mixed test levels": 3.0, **change}
    ok = udml.holds(p, T)
    assert [k for k, v in ok.items() if not v] == [broken]
    assert list(ok) == list(udml.PREMISES)
    held, text = udml.needs(ok, udml.describe(p, T), broken, "imbalance" if broken != "imbalance" else "off the ceiling")
    assert not held and "needs" in text


def test_premises_reject_missing_arms_and_columns():
    runs = _runs({"static recipe": (0.9, 2.5, 1.0, 3.0)})
    with pytest.raises(ValueError, match="no runs of arm"):
        udml.premises(runs, "static recipe", "EAU")
    with pytest.raises(KeyError, match="weight_weak"):
        udml.premises(runs.drop(columns="weight_weak"), "static recipe", "EAU")
    with pytest.raises(KeyError, match="unknown premise"):
        udml.needs({"imbalance": True}, {"imbalance": ""}, "imbalanse")
    with pytest.raises(ValueError, match="ceiling"):
        udml.Thresholds(ceiling=float("nan"))


def _search(settings: list[tuple]) -> pd.DataFrame:
    runs = pd.concat([_runs({f"search {i}: static recipe": (acc, ratio, 1.0, 3.0), f"search {i}: EAU": (0.5, 1.0, w, 3.0)})
                      for i, (acc, ratio, w) in enumerate(settings)])
    return udml.search(runs, [{"image_noise": float(i)} for i in range(len(settings))], T)


def test_search_picks_the_first_setting_where_every_premise_holds():
    table = _search([(0.99, 3.0, 0.5), (0.9, 2.2, 0.8), (0.9, 4.0, 0.7)])
    assert table.chosen.tolist() == [False, True, False]
    assert table.loc[1, "image_noise"] == 1.0


def test_search_falls_back_to_the_largest_imbalance_off_the_ceiling_then_overall():
    assert _search([(0.99, 9.0, 1.0), (0.9, 2.2, 1.0), (0.9, 3.0, 1.0)]).chosen.tolist() == [False, False, True]
    assert _search([(0.99, 9.0, 1.0), (0.98, 3.0, 0.5)]).chosen.tolist() == [True, False]
    with pytest.raises(ValueError, match="no candidate"):
        udml.search(_runs({}), [], T)


def _arms() -> dict[str, verdict.Arm]:
    rng = np.random.default_rng(0)
    base = rng.random((4, 50)) < 0.7
    return {"A": verdict.Arm([0, 1, 2, 3], {"acc": base.astype(float), "rho": np.array([0.9, 0.8, 0.85, 0.95])}),
            "B": verdict.Arm([1, 2, 3, 4], {"acc": base[[1, 2, 3, 0]].astype(float) * 0.0,
                                           "rho": np.array([-0.1, 0.0, 0.1, 0.4])})}


def test_rank_table_gives_each_arm_its_own_interval_and_paired_differences():
    table = udml.rank_table(_arms(), ["A", "B"], ["rho"], reference="A")
    assert list(table.columns) == ["rho", "rho: A − arm"]
    assert table.loc["A", "rho"].startswith("+0.88 [")
    assert table.loc["B", "rho"].startswith("+0.10 [")  # its own mean over its own seeds, signed
    assert table.loc["A", "rho: A − arm"] == "—"
    assert table.loc["B", "rho: A − arm"].startswith("+0.87 [")  # seeds 1-3 only


def test_rank_strength_is_the_mean_absolute_rho_over_modalities():
    arms = {"A": verdict.Arm([0, 1], {"rho_audio": np.array([0.5, -0.2]), "rho_image": np.array([-0.7, 0.4])}, [True, True])}
    strength = udml.rank_strength(arms, ["A"])
    assert np.allclose(strength["A"].scores["rho_abs"], [0.6, 0.3])
    assert strength["A"].converged == [True, True] and "rho_abs" not in arms["A"].scores
    with pytest.raises(KeyError, match="rho_video"):
        udml.rank_strength(arms, ["A"], ("video",))


def test_reported_deltas_are_half_the_reported_gaps():
    d = udml.reported_deltas(reported("udml"))
    assert d["clean"] == pytest.approx((70.02 - 67.2) / 200)
    assert d["noisy"] == pytest.approx((67.53 - 60.32) / 200)
    assert d["dependency"] == pytest.approx(1.7 / 200)
    with pytest.raises(KeyError, match="noisy test"):
        udml.reported_deltas(reported("udml").query("setting != 'noisy test'"))
