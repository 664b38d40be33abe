"""The MWAM chapter's analyses: suppression arms, the factorial reading, K summaries, Table 9's weights, preconditions."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from mmrepro.analysis import mwam
from mmrepro.analysis.mwam import FULL, MAIN, arm
from mmrepro.verdict import Arm, Claim


def test_suppression_arm_golden_values():
    host = Arm([0, 1, 2], {"acc_a": np.array([[1, 0], [0, 0], [1, 1]])}, [True, True, False])
    alone = Arm([1, 2, 3], {"acc_a": np.array([[1, 1], [1, 0], [0, 0]])}, [True, True, True])
    out = mwam.suppression_arm(host, alone, "a")
    assert out.seeds == [1, 2] and out.converged == [True, False]
    np.testing.assert_array_equal(out.scores["suppression"], [[1, 1], [0, -1]])
    with pytest.raises(ValueError, match="share no seed"):
        mwam.suppression_arm(host, Arm([7], {"acc_a": np.array([[1, 1]])}, [True]), "a")


def test_design_sets_the_weak_view_and_rejects_bad_input():
    data = mwam.design(MAIN, 0.5, [10, 5, 5])
    assert data["rgb_mismatch"] == 0.5 and data["depth_mismatch"] == 0.0 and data["sizes"] == [10, 5, 5]
    assert mwam.design("both weak", 0.3, [10, 5, 5])["depth_mismatch"] == 0.3
    with pytest.raises(ValueError, match="weak"):
        mwam.design(MAIN, 1.5, [10, 5, 5])
    with pytest.raises(ValueError, match="factorial cell"):
        arm("no such cell", "late host")


def _evidence(rgb_gap: float, seeds=(0, 1, 2), items: int = 50) -> dict[str, Arm]:
    """Every cell: a late host at 0.6 alone per view, rgb alone at 0.6 + rgb_gap, depth alone at 0.6 (noisy items)."""
    rng = np.random.default_rng(0)
    out = {}
    for cell in mwam.CELLS:
        base = (rng.random((len(seeds), items)) < 0.6).astype(float)
        out[arm(cell, "late host")] = Arm(list(seeds), {"acc_rgb": base, "acc_depth": base,
                                                        "frm_rgb": np.full(len(seeds), 50.0),
                                                        "frm_depth": np.full(len(seeds), 9000.0)}, [True] * 3)
        out[arm(cell, "rgb alone")] = Arm(list(seeds), {"acc_rgb": np.clip(base + rgb_gap, 0, 1)}, [True] * 3)
        out[arm(cell, "depth alone")] = Arm(list(seeds), {"acc_depth": base}, [True] * 3)
    return out


def test_factorial_reads_the_more_suppressed_modality():
    flat = mwam.with_suppression(_evidence(0.0))
    assert set(mwam.factorial_reading(flat).values()) == {"no difference resolved"}
    rgb = mwam.with_suppression(_evidence(1.0))  # rgb alone is always right: the host suppresses rgb
    assert set(mwam.factorial_reading(rgb).values()) == {"rgb (as FRM says)"}
    table = mwam.factorial(rgb)
    assert list(table.index) == list(mwam.CELLS) and (table["more accurate alone"] == "rgb").all()
    assert table.loc[MAIN, "FRM depth"] == "9e+03"


def _k_long(arms_k: dict[str, tuple[list[float], list[float]]]) -> pd.DataFrame:
    rows = [{"arm": name, "seed": 0, "epoch": e, "modality": m, "K": k}
            for name, (rgb, depth) in arms_k.items() for m, ks in (("rgb", rgb), ("depth", depth))
            for e, k in enumerate(ks)]
    return pd.DataFrame(rows)


def test_k_summary_and_host_gap():
    k_long = _k_long({"a": ([1.48, 1.49], [0.5, 0.6]), "b": ([1.48, 1.49], [0.5, 0.65])})
    summary = mwam.k_summary(k_long, 0.5, 1.5)
    assert summary.loc[("a", "depth"), "largest move within a run"] == pytest.approx(0.1)
    assert summary.loc[("a", "rgb"), "distance to the nearest bound"] == pytest.approx(0.015)
    assert not summary["saturated"].any(), "no within-epoch spread logged: saturation cannot be shown"
    assert mwam.host_gap(k_long, ["a", "b"]) == pytest.approx(0.05)
    assert mwam.host_gap(_k_long({"a": ([1.0], [0.7]), "b": ([1.0], [0.7])}), ["a", "b"]) == 0.0
    with pytest.raises(ValueError, match="two of"):
        mwam.host_gap(k_long, ["a"])
    with pytest.raises(ValueError, match="logs K"):
        mwam.k_trajectories([{"arm": "x", "seed": 0, "history": [{"epoch": 0}]}])


def test_k_grid_default_row_and_saturation():
    grid = mwam.k_grid({"rgb": 60.0, "depth": 30000.0})
    default = grid.iloc[-1]
    assert default["same K as the default"] and default["K rgb"] == pytest.approx(1.5 - 1 / (1 + np.exp(6 * 0.7)), abs=1e-3)
    assert grid.loc["1.5/1.0/0.7/6.3", "same K as the default"]  # both weights saturated: lambda cannot matter
    assert not grid.loc["1.2/1.0/0.7/6.0", "same K as the default"]  # alpha shifts both weights
    balanced = mwam.k_grid({"rgb": 1.0, "depth": 1.0})
    assert balanced["K rgb / K depth"].to_numpy() == pytest.approx(1.0)


def test_preconditions_pcr_needs_an_unlowered_full_accuracy():
    ones, half = np.ones((3, 40)), np.r_[np.ones(20), np.zeros(20)] * np.ones((3, 1))
    evidence = {"host": Arm([0, 1, 2], {FULL: ones, "pcr": np.full((3, 40), 0.3), "average": ones * 0.7}, [True] * 3),
                "mwam": Arm([0, 1, 2], {FULL: half, "pcr": np.full((3, 40), 0.1), "average": ones * 0.6}, [True] * 3)}
    pcr = Claim("pcr", "pcr", "mwam", "host", 0.01, "stated", higher_is_better=False)
    average = Claim("average", "average", "mwam", "host", 0.01, "stated")
    out = mwam.preconditions([pcr, average], evidence)
    assert out["pcr"][0] is False and "full-modality accuracy changes by -50.0" in out["pcr"][1]
    assert out["average"] == (True, "the control's Average leaves 30.0 points below 100%")
    evidence["mwam"].scores[FULL] = ones
    assert mwam.preconditions([pcr], evidence)["pcr"][0] is True
    with pytest.raises(ValueError, match="no precondition"):
        mwam.preconditions([Claim("x", "accuracy", "mwam", "host", 0.01, "stated")], evidence)


def test_comparison_rows_are_paired_intervals():
    evidence = {"t": Arm([0, 1], {"m": np.array([[1.0, 1.0], [1.0, 0.0]])}, [True, True]),
                "c": Arm([0, 1, 2], {"m": np.array([[0.0, 1.0], [1.0, 0.0], [0.0, 0.0]])}, [True] * 3),
                "lonely": Arm([5], {"m": np.array([[1.0, 1.0]])}, [True])}
    table = mwam.comparison(evidence, {"t − c": ("t", "c"), "none": ("lonely", "c")}, {"metric m": "m"})
    assert table.loc["t − c", "metric m"].startswith("+25.0 [") and table.loc["none", "metric m"] == "—"


def test_subset_scores_average_and_pcr_golden_values():
    full = np.array([[1.0, 1.0, 1.0, 0.0], [1.0, 1.0, 0.0, 0.0]])
    rgb = np.array([[1.0, 0.0, 0.0, 0.0], [1.0, 1.0, 0.0, 1.0]])
    depth = np.array([[1.0, 1.0, 0.0, 0.0], [0.0, 1.0, 0.0, 0.0]])
    evidence = {"host": Arm([0, 1], {"acc_rgb": rgb, "acc_depth": depth, FULL: full}, [True, True]),
                "alone": Arm([0, 1], {"acc_rgb": rgb}, [True, True]),
                "other": Arm([0, 1], {"suppression": rgb}, [True, True])}
    out = mwam.with_subset_scores(evidence)
    np.testing.assert_allclose(out["host"].scores["average"], (full + rgb + depth) / 3)
    # seed 0: A_full 0.75, rgb 0.25, depth 0.5 -> PCR ((0.75-0.25) + (0.75-0.5)) / 2 / 0.75 = 0.5
    np.testing.assert_allclose(out["host"].scores["pcr"].mean(axis=1), [0.5, 0.0])
    assert "pcr" not in out["alone"].scores and np.array_equal(out["alone"].scores["average"], rgb)
    assert out["other"] is evidence["other"]


def test_three_view_design_full_metric_and_table9_helpers():
    spec = mwam.design(mwam.THREE, 0.5, [10, 5, 5])
    assert spec["ir"] is True and spec["ir_mismatch"] == 0.25
    assert spec["rgb_mismatch"] == 0.5 and spec["depth_mismatch"] == 0.0  # the main design's two views
    assert mwam.arm(mwam.THREE, "late host") == "three views: late host"
    a = Arm([0], {"acc_rgb": np.ones((1, 2)), mwam.THREE_FULL: np.ones((1, 2)), "acc_rgb+depth": np.ones((1, 2))}, [True])
    assert mwam.full_metric(a) == "acc_rgb+depth+ir"
    with pytest.raises(ValueError, match="per-subset"):
        mwam.full_metric(Arm([0], {"average": np.ones((1, 2))}, [True]))
    assert mwam.table9_label((1.5, 1.0, 0.4, 6.0)) == "α/β/γ/λ 1.5/1/0.4/6"
    assert mwam.table9_kwargs((1.2, 1.0, 0.7, 6.0)) == {"alpha": 1.2, "beta": 1.0, "gamma": 0.7, "lam": 6.0}


def test_k_trajectories_spread_within_epoch_from_k_squared():
    records = [{"arm": "x", "seed": 0, "history": [
        {"epoch": 0, "train_K_rgb": 1.0, "train_K2_rgb": 1.09, "train_K_ir": 0.5},  # steps 0.7 and 1.3: std 0.3
        {"epoch": 1, "train_K_rgb": 1.2, "train_K2_rgb": 1.44, "train_K_ir": 0.5}]}]
    k_long = mwam.k_trajectories(records)
    assert set(k_long.modality) == {"rgb", "ir"}
    rgb = k_long[k_long.modality == "rgb"]["K std within epoch"].to_numpy()
    assert rgb == pytest.approx([0.3, 0.0], abs=1e-9)
    assert k_long[k_long.modality == "ir"]["K std within epoch"].isna().all()
    summary = mwam.k_summary(k_long, 0.5, 1.5)
    assert summary.loc[("x", "rgb"), "mean std within an epoch"] == pytest.approx(0.15)
    assert not summary.loc[("x", "rgb"), "saturated"], "rgb moves within an epoch"
    still = mwam.k_summary(mwam.k_trajectories([{"arm": "y", "seed": 0, "history": [
        {"epoch": e, "train_K_rgb": 1.49, "train_K2_rgb": 1.49 ** 2} for e in range(2)]}]), 0.5, 1.5)
    assert still.loc[("y", "rgb"), "saturated"], "at the bound and no spread: saturated"
