"""Run records: keys that change with everything that changes the numbers, loading, sharding, re-derivation."""

import ast
import json

import pytest

from mmrepro import records
from mmrepro.experiment import RunSpec, converged

TRAIN = {"epochs": 2, "optimizer": "sgd", "lr": 0.05, "batch_size": 64}


def spec(arm="joint", method="joint", seed=0, **train):
    return RunSpec(arm=arm, method=method, seed=seed, data={"name": "synthetic", "sizes": [200, 60, 60]},
                   train={**TRAIN, **train})


def test_formatting_and_docstrings_do_not_change_the_code_hash_but_code_does():
    plain = records._normalised(ast.parse("def f(x):\n    return x + 1\n"))
    documented = records._normalised(ast.parse('def f(x):  # add one\n    """Add one."""\n    return (x + 1)\n'))
    changed = records._normalised(ast.parse("def f(x):\n    return x + 2\n"))
    assert plain == documented
    assert plain != changed


def test_the_fingerprint_follows_what_a_method_uses_and_nothing_else():
    fp = records.code_fingerprint((records.method_module("ogm_ge"), *records.BASE_MODULES))
    assert {"mmrepro.methods.ogm_ge", "mmrepro.methods.base", "mmrepro.train", "mmrepro.models.fusion"} <= set(fp)
    assert "mmrepro.methods.udml" not in fp  # another method's edit leaves OGM-GE's records valid


def test_the_key_changes_with_the_spec_but_not_with_the_arm_label():
    assert records.key(spec()) == records.key(spec(arm="renamed"))
    assert records.key(spec()) != records.key(spec(seed=1))
    assert records.key(spec()) != records.key(spec(lr=0.1))
    assert records.key(spec()) != records.key(spec(method="late"))


def test_a_grid_trains_what_is_missing_then_loads_it(tmp_path):
    specs = [spec(seed=s) for s in (0, 1)]
    first = records.run_grid("toy", specs, root=tmp_path, processes=1)
    assert (first.loaded, first.computed) == (0, 2)
    assert len(list((tmp_path / "toy").glob("*.json"))) == 2
    again = records.run_grid("toy", specs + [spec(seed=2)], root=tmp_path, processes=1)
    assert (again.loaded, again.computed) == (2, 1)
    assert [r["metrics"] for r in again.records[:2]] == [r["metrics"] for r in first.records]
    record = again.records[0]
    assert len(record["items"]["accuracy"]) == 60 and len(record["predictions"]) == 60
    assert record["provenance"]["git_commit"] is None or len(record["provenance"]["git_commit"]) == 40


def test_rerun_recomputes_and_stale_files_are_reported(tmp_path, monkeypatch):
    records.run_grid("toy", [spec()], root=tmp_path, processes=1)
    monkeypatch.setenv("MMREPRO_RERUN", "1")
    assert records.run_grid("toy", [spec()], root=tmp_path, processes=1).computed == 1
    monkeypatch.delenv("MMREPRO_RERUN")
    grid = records.run_grid("toy", [spec(lr=0.1)], root=tmp_path, processes=1)
    assert grid.computed == 1 and len(grid.stale) == 1


def test_an_interrupted_grid_keeps_the_runs_that_finished(tmp_path):
    diverges = spec(arm="diverges", lr=1e30)  # fails mid-training, after the first run has finished
    with pytest.raises(FloatingPointError, match="non-finite"):
        records.run_grid("toy", [spec(), diverges], root=tmp_path, processes=1)
    assert len(list((tmp_path / "toy").glob("*.json"))) == 1


def test_shards_split_the_missing_runs_between_processes(tmp_path):
    specs = [spec(seed=s) for s in range(4)]
    a = records.run_grid("toy", specs, root=tmp_path, processes=1, shard=(0, 2))
    b = records.run_grid("toy", specs, root=tmp_path, processes=1, shard=(1, 2))
    assert a.computed == 2 and b.computed == 2 and b.loaded == 2
    assert records.run_grid("toy", specs, root=tmp_path, processes=1).loaded == 4


def test_two_worker_processes_give_the_same_records_as_one(tmp_path):
    specs = [spec(seed=s) for s in (0, 1)]
    one = records.run_grid("one", specs, root=tmp_path, processes=1, save=False)
    two = records.run_grid("two", specs, root=tmp_path, processes=2, save=False)
    assert [r["metrics"] for r in one.records] == [r["metrics"] for r in two.records]


def test_verify_re_derives_a_record_and_catches_a_tampered_one(tmp_path):
    records.run_grid("toy", [spec()], root=tmp_path, processes=1)
    path = next((tmp_path / "toy").glob("*.json"))
    assert "re-derived identically" in records.verify(tmp_path / "toy")
    record = json.loads(path.read_text())
    record["metrics"]["accuracy"] += 0.01
    path.write_text(json.dumps(record))
    with pytest.raises(records.RecordError, match="differ"):
        records.verify(tmp_path / "toy")


def test_a_corrupt_record_names_its_file(tmp_path):
    records.run_grid("toy", [spec()], root=tmp_path, processes=1)
    path = next((tmp_path / "toy").glob("*.json"))
    path.write_text("{not json")
    with pytest.raises(records.RecordError, match=path.name):
        records.run_grid("toy", [spec()], root=tmp_path, processes=1)


def test_specs_are_checked_before_any_training():
    with pytest.raises(ValueError, match="unknown name .nope.; valid: shapley"):
        RunSpec(arm="a", method="joint", seed=0, data={"name": "synthetic"}, train=TRAIN, monitor="nope")
    with pytest.raises(ValueError, match="seed"):
        RunSpec(arm="a", method="joint", seed=0, data={"name": "synthetic"}, train={**TRAIN, "seed": 3})
    with pytest.raises(ValueError, match="each \\(arm, seed\\) is one run"):
        records.run_grid("toy", [spec(), spec()], save=False)


def test_convergence_rule_reads_the_validation_curve():
    import pandas as pd
    rising = pd.DataFrame({"epoch": range(10), "val_accuracy": [i / 10 for i in range(10)]})
    peaked = pd.DataFrame({"epoch": range(10), "val_accuracy": [0.1, 0.5, 0.9, 0.8, 0.8, 0.8, 0.7, 0.8, 0.8, 0.8]})
    assert converged(rising) == (False, 9)
    assert converged(peaked) == (True, 2)


def test_the_shard_comes_from_the_launcher(monkeypatch):
    for var in ("SLURM_ARRAY_TASK_ID", "SLURM_ARRAY_TASK_COUNT", "RANK", "WORLD_SIZE"):
        monkeypatch.delenv(var, raising=False)
    assert records.shard_from_env() is None
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("WORLD_SIZE", "2")
    assert records.shard_from_env() == (1, 2)
    monkeypatch.setenv("SLURM_ARRAY_TASK_ID", "3")
    monkeypatch.setenv("SLURM_ARRAY_TASK_COUNT", "4")
    assert records.shard_from_env() == (3, 4)


def test_measures_named_by_path_run_and_their_code_is_in_the_key(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(__import__("pathlib").Path(__file__).parent))
    measured = RunSpec(arm="joint", method="joint", seed=0, data={"name": "synthetic", "sizes": [200, 60, 60]},
                       train=TRAIN, measures=(("record_measures:first_item", {"scale": 2.0}), "probe"))
    record = records.run_grid("toy", [measured], root=tmp_path, processes=1).records[0]
    assert record["metrics"]["toy"] == 2.0 and record["items"]["toy_items"] == [2.0] * 60
    assert "probe_m0" in record["items"]
    assert records.key(measured) != records.key(spec())
    assert RunSpec.from_dict(record["spec"]) == measured
    with pytest.raises(ValueError, match="cannot import"):
        RunSpec(arm="a", method="joint", seed=0, data={"name": "synthetic"}, train=TRAIN, measures=("nope:f",))


def test_a_bad_method_setting_fails_before_any_run_trains(tmp_path):
    bad = RunSpec(arm="ogm", method="ogm_ge", seed=0, data={"name": "synthetic", "sizes": [200, 60, 60]},
                  train=TRAIN, method_kwargs={"alpha": -1.0})
    with pytest.raises(ValueError, match="arm 'ogm' cannot be built: OGM-GE alpha"):
        records.run_grid("toy", [spec(), bad], root=tmp_path, processes=1)
    assert not (tmp_path / "toy").exists()


def test_a_run_recorded_by_another_chapter_is_reused_under_this_chapter_label(tmp_path):
    records.run_grid("first", [spec(arm="joint")], root=tmp_path, processes=1)
    grid = records.run_grid("second", [spec(arm="joint training")], root=tmp_path, processes=1)
    assert (grid.loaded, grid.computed) == (1, 0)
    assert grid.records[0]["arm"] == "joint training"
    assert not (tmp_path / "second").exists()


def test_verify_refuses_a_stale_record_before_re_deriving(tmp_path):
    records.run_grid("toy", [spec(), spec(seed=1)], root=tmp_path, processes=1)
    path = sorted((tmp_path / "toy").glob("*.json"))[0]
    record = json.loads(path.read_text())
    record["key"] = "0" * 16  # as if made by other code
    path.write_text(json.dumps(record))
    with pytest.raises(records.RecordError, match=f"{path.name} is stale"):
        records.verify(tmp_path / "toy")


def test_stale_lists_exactly_the_records_the_current_code_would_not_give(tmp_path):
    records.run_grid("toy", [spec(), spec(seed=1)], root=tmp_path, processes=1)
    first, second = sorted((tmp_path / "toy").glob("*.json"))
    assert records.stale(tmp_path / "toy") == []
    assert "\n" not in first.read_text().strip()  # records are written compactly, one line
    record = json.loads(first.read_text())
    record["key"] = "0" * 16
    first.write_text(json.dumps(record))
    assert records.stale(tmp_path / "toy") == [first.name]
    assert records.main(["stale", str(tmp_path / "toy")]) == 1
    second.write_text("{not json")  # a corrupt record is an error naming it, not a stale one
    with pytest.raises(records.RecordError, match=second.name):
        records.stale(tmp_path / "toy")


def test_validation_score_reads_the_kept_epoch_not_the_last_or_the_largest():
    history = [{"epoch": 0, "val_accuracy": 0.9}, {"epoch": 1, "val_accuracy": 0.7}, {"epoch": 2, "val_accuracy": 0.8}]
    record = {"arm": "a", "seed": 0, "selected_epoch": 1, "history": history}
    assert records.validation_score(record) == 0.7
    with pytest.raises(ValueError, match="selected epoch"):
        records.validation_score({**record, "selected_epoch": 5})


@pytest.mark.parametrize("recorded, fresh, same", [
    ([1.0, 0.0, float("nan")], [1.0, 0.0, float("nan")], True),
    ([[0.5], [0.25]], [[0.5], [0.25]], True),  # regression errors: one row per item
    ([[0.5], [0.25]], [[0.5], [0.26]], False),
    ([1.0, 0.0], [1.0, 0.0, 1.0], False),
    ([1.0, 0.0], None, False),
])
def test_verify_compares_per_item_scores_of_either_shape(recorded, fresh, same):
    assert records._same_items(recorded, fresh, 1e-6) is same
