"""The leaderboard's analysis: which methods run where, recipe choice, cells, the aggregate, the generated text."""

import numpy as np
import pandas as pd
import pytest

from mmrepro.analysis import leaderboard as lb


def record(arm, seed, correct, converged=True, val=0.5, epoch_time=1.0, **metrics):
    items = {"accuracy": list(map(float, correct)), **{k: list(map(float, v)) for k, v in metrics.items()}}
    return {"arm": arm, "seed": seed, "key": f"{arm}-{seed}", "converged": converged, "epochs": 10, "best_epoch": 3,
            "selected_epoch": 3,
            "spec": {"train": {"patience": None, **lb.RECIPES["Adam 1e-3"]}},
            "history": [{"epoch": 3, "val_accuracy": val, "epoch_time": epoch_time}], "cpu_time": 2.0, "wall_time": 3.0,
            "items": items, "metrics": {k: float(np.mean(v)) for k, v in items.items()}}


def grid(gain=0.2, settings=("AV-Digits", "mfeat"), bad=()):
    rng = np.random.default_rng(0)
    out = []
    for s in settings:
        for seed in range(5):
            base = rng.random(40) < 0.5
            better = base | (rng.random(40) < gain)
            out += [record(f"joint | {s}", seed, base, acc_missing=base, acc_mixed=base),
                    record(f"OGM-GE | {s}", seed, better, converged=f"OGM-GE | {s}" not in bad, epoch_time=2.0,
                           acc_missing=better, acc_mixed=better)]
    return out


def test_methods_that_cannot_run_on_a_setting_say_why():
    assert lb.applies("joint", "mfeat") == (True, "")
    ok, why = lb.applies("Greedy", "mfeat")
    assert not ok and "two modalities" in why
    assert not lb.applies("MWAM", "mfeat")[0] and lb.applies("MWAM", "AV-Digits")[0]


def test_a_size_rejects_unknown_names_and_grids_without_joint_or_seed_zero():
    with pytest.raises(ValueError, match="unknown or no settings"):
        lb.Size(("nowhere",), ("joint",), ("Adam 1e-3",), (0, 1), 2, None)
    with pytest.raises(ValueError, match="joint"):
        lb.Size(("mfeat",), ("OGM-GE",), ("Adam 1e-3",), (0, 1), 2, None)
    with pytest.raises(ValueError, match="seed 0"):
        lb.Size(("mfeat",), ("joint",), ("Adam 1e-3",), (1, 2), 2, None)


def test_every_cell_tunes_on_seed_zero_and_the_best_validation_recipe_is_kept():
    size = lb.Size(("mfeat",), ("joint", "OGM-GE"), ("SGD 0.05", "Adam 1e-3"), (0, 1, 2), 2, None)
    specs = lb.tuning_specs(size)
    assert [(s.arm, s.seed) for s in specs][:2] == [("joint | mfeat | SGD 0.05", 0), ("joint | mfeat | Adam 1e-3", 0)]
    tuning = [record("joint | mfeat | SGD 0.05", 0, [1], val=0.9), record("joint | mfeat | Adam 1e-3", 0, [1], val=0.8),
              record("OGM-GE | mfeat | SGD 0.05", 0, [1], val=0.7), record("OGM-GE | mfeat | Adam 1e-3", 0, [1], val=0.7)]
    choice = lb.choose(tuning, size)
    assert choice == {("joint", "mfeat"): "SGD 0.05", ("OGM-GE", "mfeat"): "SGD 0.05"}  # a tie keeps the first
    finals = lb.final_specs(choice, size)
    assert {s.arm for s in finals} == {"joint | mfeat", "OGM-GE | mfeat"} and len(finals) == 6
    assert lb.records.key(finals[0]) == lb.records.key(specs[0])  # seed 0 is the tuning run: loaded, not retrained


def test_a_cell_is_the_paired_gain_over_joint_and_unconverged_cells_are_marked():
    long = lb.long_table(grid(bad=("OGM-GE | mfeat",)), ("AV-Digits", "mfeat"), ("joint", "OGM-GE"))
    table = lb.main_table(long)
    assert list(table.columns) == ["AV-Digits", "mfeat", "a modality missing", "mixed per-sample noise"]
    assert table.loc["OGM-GE", "mfeat"] == "not converged"
    assert table.loc["OGM-GE", "AV-Digits"].startswith("+")
    row = long[(long["column"] == "AV-Digits") & (long["method"] == "OGM-GE")].iloc[0]
    assert row["low"] > 0  # every item joint gets right OGM-GE also gets right, and more
    assert "OGM-GE" in lb.which_method_when(long).splitlines()[0]


def test_beats_counts_ties_half():
    assert lb.beats(np.array([1.0, 2.0]), np.array([1.0])) == 0.75
    assert lb.beats(np.array([0.0]), np.array([1.0])) == 0.0


def test_the_aggregate_averages_over_columns_with_a_bootstrap_interval():
    agg = lb.aggregate(grid(), ("AV-Digits", "mfeat"), ("joint", "OGM-GE"), resamples=200)
    row = agg.loc["OGM-GE"]
    assert row["columns"] == 4 and row["low"] <= row["P(beats joint)"] <= row["high"]
    assert row["P(beats joint)"] > 0.75
    flat = lb.aggregate(grid(gain=0.0), ("AV-Digits",), ("joint", "OGM-GE"), resamples=200).loc["OGM-GE"]
    assert flat["P(beats joint)"] == pytest.approx(0.5)  # identical runs: every pair ties


def test_step_time_and_compute_read_the_records():
    records = grid()
    ratio = lb.step_time(records)
    assert ratio.loc["joint"].tolist() == [1.0, 1.0] and ratio.loc["OGM-GE"].tolist() == [2.0, 2.0]
    alias = {**records[0], "arm": "joint | AV-Digits | Adam 1e-3"}  # the same run under its tuning label
    assert lb.compute([*records, alias])["distinct runs"] == len(records)


def test_fmt_cell_marks_what_does_not_apply():
    assert lb.fmt_cell({"applies": False}) == "does not apply"
    assert lb.fmt_cell({"applies": True, "converged": True, "method": "joint", "mean": 0.971}) == "97.1"


def test_the_test_time_conditions_score_every_item_the_same_way_for_every_call():
    from mmrepro import data, methods
    from mmrepro.measures import leaderboard as conditions
    splits = data.load("synthetic", sizes=[60, 20, 40])
    target = splits.modalities[0]
    method = methods.build("joint", splits, encoder="mlp")
    metrics, items = conditions.conditions(method, splits, target=target, families={"gaussian": 0.5})
    assert {f"acc_without_{m}" for m in splits.modalities} | {"acc_missing", "acc_mixed", "acc_gaussian"} <= set(items)
    assert all(len(v) == 40 for v in items.values())
    assert metrics["acc_missing"] == pytest.approx(np.mean(items["acc_missing"]))
    again = conditions.conditions(method, splits, target=target, families={"gaussian": 0.5})[1]
    assert again == items  # seeded draws: every run sees the same noise
    with pytest.raises(ValueError, match="not a modality"):
        conditions.conditions(method, splits, target="smell")
