"""The leaderboard's analysis: which methods run where, recipe choice, cells, the aggregate, the generated text."""

import numpy as np
import pandas as pd
import pytest

from mmrepro import records
from mmrepro.analysis import leaderboard as lb


def record(arm, seed, correct, converged=True, val=0.5, epoch_time=1.0, **metrics):
    items = {"accuracy": list(map(float, correct)), **{k: list(map(float, v)) for k, v in metrics.items()}}
    return {"arm": arm, "seed": seed, "key": f"{arm}-{seed}", "converged": converged, "epochs": 10, "best_epoch": 3,
            "selected_epoch": 3,
            "spec": {"train": {"patience": None, "epochs": 10, **lb.RECIPES["Adam 1e-3"]}},
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


def test_compute_counts_each_run_once_and_plans_runs_times_seconds():
    records = grid()
    alias = {**records[0], "arm": "joint | AV-Digits | Adam 1e-3"}  # the same run under its tuning label
    spent = lb.compute([*records, alias])
    assert spent.loc["the grid", "runs"] == len(records) and spent.loc["joint", "runs"] == 10
    assert spent.loc["the grid", "CPU time (h)"] == pytest.approx(round(2.0 * len(records) / 3600, 3))
    size = lb.Size(("AV-Digits", "mfeat"), ("joint", "Greedy"), ("SGD 0.05", "Adam 1e-3"), (0, 1, 2), 2, None)
    plan = lb.plan(size, {"joint": 2.0, "Greedy": 4.0})
    assert plan.loc["joint", "runs"] == 2 * 4 and plan.loc["Greedy", "runs"] == 4  # Greedy: not on mfeat
    assert plan.loc["the grid", "CPU h"] == pytest.approx(round((8 * 2 + 4 * 4) / 3600, 3))


def test_step_time_reads_the_benchmark_and_fills_settings_of_the_same_shape(tmp_path):
    rows = [{"method": m, "setting": s, "ms_per_step": 1.0, "relative_to_joint": r}
            for s in ("AV-Digits", "mfeat") for m, r in (("joint", 1.0), ("OGM-GE", 2.0 if s == "mfeat" else 1.5))]
    path = tmp_path / "step.json"
    lb.results.write_json(path, {"command": "python benchmarks/step_time.py --leaderboard", "results": rows,
                                 "cpu_seconds": 12.0, "load_average_1_5_15_min": [1.0, 1.0, 1.0],
                                 "device": "cpu", "time": "2026-12-07T14:00:00+00:00"})
    ratio = lb.step_time(path, ("AV-Digits", "image degraded", "mfeat"))
    assert list(ratio.index) == ["joint", "OGM-GE"] and list(ratio.columns) == ["AV-Digits", "image degraded", "mfeat"]
    assert ratio.loc["OGM-GE"].tolist() == [1.5, 1.5, 2.0]
    assert "--leaderboard" in lb.step_time_source(path)


def test_recipe_choice_prefers_converged_runs_and_convergence_is_listed_per_cell():
    size = lb.Size(("mfeat",), ("joint",), ("SGD 0.05", "Adam 1e-3"), (0, 1), 2, None)
    tuning = [record("joint | mfeat | SGD 0.05", 0, [1], val=0.9, converged=False),
              record("joint | mfeat | Adam 1e-3", 0, [1], val=0.8)]
    assert lb.choose(tuning, size) == {("joint", "mfeat"): "Adam 1e-3"}
    unconverged = [{**r, "converged": False} for r in tuning]
    assert lb.choose(unconverged, size) == {("joint", "mfeat"): "SGD 0.05"}  # none converged: the best one
    conv = lb.convergence(grid(bad=("OGM-GE | mfeat",)))
    assert conv.index[0] == ("OGM-GE", "mfeat") and not conv.iloc[0]["all converged"]
    assert conv["all converged"].sum() == len(conv) - 1


def test_a_size_can_be_restricted_to_methods_and_always_keeps_joint():
    size = lb.size_for("book", methods=["MWAM"])
    assert size.methods == ("joint", "MWAM")
    assert lb.CUTS["epoch cap"].startswith(f"every run trains for up to {size.epochs} epochs")


def test_agreement_rederives_a_chapter_verdict_from_its_records(tmp_path):
    import json
    folder = tmp_path / "bench"
    folder.mkdir()
    for r in grid(settings=("AV-Digits",)):
        arm = r["arm"].split(" | ")[0]
        (folder / f"{arm}-{r['seed']}.json").write_text(json.dumps({**r, "arm": arm}))
    pair = lb.Counterpart("OGM-GE beats joint", "bench", "OGM-GE", "joint", "accuracy", lambda: 0.01,
                          ("OGM-GE | AV-Digits", "joint | AV-Digits", "accuracy"))
    with pytest.raises(FileNotFoundError, match="no saved verdicts of chapter 'bench'"):
        lb.agreement(grid(settings=("AV-Digits",)), [pair], root=tmp_path)
    page = pd.DataFrame({"outcome": ["not testable here: no headroom"], "effect": [0.0], "low": [-0.01],
                         "high": [0.01], "seeds": [5]}, index=pd.Index(["OGM-GE beats joint"], name="claim"))
    records.save_verdicts("bench", page, "book", root=tmp_path)
    table = lb.agreement(grid(settings=("AV-Digits",)), [pair], root=tmp_path)
    row = table.loc["OGM-GE beats joint"]
    assert row["the page's verdict"] == "not testable here: no headroom", "the page's own verdict, as saved"
    assert row["chapter, judged alone"] == row["leaderboard, judged alone"] and row["agree"]
    assert row["chapter seeds"] == row["leaderboard seeds"] == 5 and row["chapter delta (points)"] == 1.0


def test_verdicts_are_saved_at_the_book_profile_only(tmp_path):
    page = pd.DataFrame({"outcome": ["reproduced"], "effect": [0.1], "low": [0.05], "high": [0.15], "seeds": [5],
                         "extra": ["not saved"]}, index=pd.Index(["a claim"], name="claim"))
    assert records.save_verdicts("ch", page, "smoke", root=tmp_path) is None
    assert records.save_verdicts("ch", page, "full", root=tmp_path) is None
    records.save_verdicts("ch", page, "book", root=tmp_path)
    saved = records.read_verdicts("ch", root=tmp_path)
    assert list(saved.columns) == ["outcome", "effect", "low", "high", "seeds"]
    assert saved.loc["a claim", "outcome"] == "reproduced"


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
