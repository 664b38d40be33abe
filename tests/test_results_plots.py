"""Run records, reported numbers, profiles and the plotting helpers."""

from __future__ import annotations

import json
import re
from importlib import resources
from types import SimpleNamespace

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402

from mmrepro import plots, profiles, results  # noqa: E402

# --- results -----------------------------------------------------------------------


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


# --- profiles -----------------------------------------------------------------------


def test_profiles(monkeypatch):
    assert profiles.pick("book", smoke=1, book=2, full=3) == 2
    with pytest.raises(ValueError) as err:
        profiles.pick("huge", smoke=1, book=2, full=3)
    assert "huge" in str(err.value) and all(p in str(err.value) for p in profiles.PROFILES)
    monkeypatch.setenv("MMREPRO_PROFILE", "full")
    assert profiles.current() == "full"
    monkeypatch.delenv("MMREPRO_PROFILE")
    assert profiles.current() == "smoke"


def test_sizes_read_one_dict_per_profile_and_reject_uneven_tables():
    table = dict(smoke=dict(epochs=1, seeds=[0]), book=dict(epochs=5, seeds=[0, 1]), full=dict(epochs=40, seeds=[0, 1]))
    size = profiles.sizes("book", **table)
    assert (size.epochs, size.seeds) == (5, [0, 1])
    with pytest.raises(ValueError, match=r"missing \{'full': \['seeds'\]\}"):
        profiles.sizes("book", **{**table, "full": dict(epochs=40)})
    with pytest.raises(ValueError, match="one dict per profile"):
        profiles.sizes("book", smoke=table["smoke"], book=table["book"])
    with pytest.raises(ValueError, match="huge"):
        profiles.sizes("huge", **table)


# --- plots --------------------------------------------------------------------------


@pytest.fixture
def frame() -> pd.DataFrame:
    return pd.DataFrame({"level": [0, 1, 0, 1] * 2, "accuracy": [0.9, 0.6, 0.8, 0.5, 0.7, 0.4, 0.6, 0.3],
                         "method": ["joint"] * 4 + ["ogm_ge"] * 4, "seed": [0, 0, 1, 1] * 2})


@pytest.fixture(autouse=True)
def close_figures():
    yield
    plt.close("all")


def _labelled(ax: plt.Axes) -> bool:
    return bool(ax.get_xlabel()) and bool(ax.get_ylabel())


def test_lines_bars_scatter_label_their_axes(frame):
    ax = plots.lines(frame, "level", "accuracy", hue="method", title="t", xlabel="noise std", ylabel="accuracy")
    assert (ax.get_xlabel(), ax.get_ylabel(), ax.get_title()) == ("noise std", "accuracy", "t")
    assert ax.get_legend() is not None and len(ax.get_lines()) >= 2
    assert _labelled(plots.bars(frame, "method", "accuracy", hue="level"))
    assert _labelled(plots.scatter(frame, "level", "accuracy", hue="method"))


def test_heatmap_and_panels(frame):
    table = frame.pivot_table(index="method", columns="level", values="accuracy")
    ax = plots.heatmap(table, xlabel="noise std", ylabel="method")
    assert _labelled(ax) and len(ax.texts) == table.size  # every cell annotated
    fig, axes = plots.panels(3, ncols=2)
    assert len(axes) == 3 and len(fig.axes) == 4 and not fig.axes[3].get_visible()
    assert _labelled(plots.lines(frame, "level", "accuracy", ax=axes[0]))
