"""Run records and reported numbers: atomic JSON, provenance, saved runs, the reported tables."""

from __future__ import annotations

import json
import re
from importlib import resources
from types import SimpleNamespace

import pandas as pd
import pytest

from mmrepro import results


def test_write_json_is_atomic(tmp_path):
    path = tmp_path / "run.json"
    results.write_json(path, {"accuracy": 0.5})
    with pytest.raises(TypeError):
        results.write_json(path, {"accuracy": 0.9, "bad": {("tuple", "key"): 1}})  # fails mid-serialisation
    assert json.loads(path.read_text()) == {"accuracy": 0.5}, "the old record must survive a failed write"
    assert [p.name for p in tmp_path.iterdir()] == ["run.json"], "no temporary file may be left behind"


def test_provenance_names_commit_version_and_device():
    record = results.provenance("cuda:H100 x1")
    assert record["device"] == "cuda:H100 x1" and record["mmrepro"] == results.__version__
    assert record["git_commit"] is None or re.fullmatch(r"[0-9a-f]{40}", record["git_commit"])
    assert {"torch", "python", "platform", "time"} <= set(record)
    assert results.provenance()["device"] in ("cpu", "cuda")


def test_save_run_and_load_or_run(tmp_path):
    path = results.save_run(tmp_path / "a" / "run.json", {"lr": 0.1}, {"accuracy": 0.7}, 1.5, "cpu")
    record = json.loads(path.read_text())
    assert record["config"] == {"lr": 0.1} and record["metrics"] == {"accuracy": 0.7} and record["device"] == "cpu"
    calls = []

    def run():
        calls.append(1)
        return {"metrics": {"accuracy": 0.8}}

    first = results.load_or_run(tmp_path / "b.json", run)
    second = results.load_or_run(tmp_path / "b.json", run)
    assert first == second == {"metrics": {"accuracy": 0.8}} and len(calls) == 1


@pytest.fixture
def reported_folder(tmp_path, monkeypatch):
    """A stand-in for mmrepro/reported/ with one good and one malformed table."""
    folder = tmp_path / "reported"
    folder.mkdir()
    pd.DataFrame([{"paper": "toy", "dataset": "CREMA-D", "setting": "main", "method": "joint", "metric": "accuracy",
                   "value": 51.7, "source": "Table 1"}]).to_csv(folder / "toy.csv", index=False)
    (folder / "broken.csv").write_text("paper,value\ntoy,1\n")
    monkeypatch.setattr(results, "resources", SimpleNamespace(files=lambda package: tmp_path))
    return folder


def test_reported_reads_a_table(reported_folder):
    table = results.reported("toy")
    assert list(table.columns) == list(results.REPORTED_COLUMNS) and table["value"].item() == 51.7


def test_reported_errors_list_the_valid_papers_and_missing_columns(reported_folder):
    with pytest.raises(ValueError) as err:
        results.reported("nope")
    assert "nope" in str(err.value) and "broken, toy" in str(err.value)
    with pytest.raises(ValueError, match="lacks columns"):
        results.reported("broken")


def _shipped_tables() -> list[str]:
    folder = resources.files("mmrepro").joinpath("reported")
    return sorted(p.name[:-4] for p in folder.iterdir() if p.name.endswith(".csv"))


@pytest.mark.parametrize("paper", _shipped_tables())
def test_shipped_reported_tables_are_well_formed(paper):
    table = results.reported(paper)
    assert len(table) and table["source"].notna().all() and pd.api.types.is_numeric_dtype(table["value"])
