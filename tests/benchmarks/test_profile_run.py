"""The run profiler: nested pieces are timed once, and a profiled run accounts for every step."""

from __future__ import annotations

import time

import pytest

from mmrepro.experiment import RunSpec

from .scripts import load

profile_run = load("profile_run")


def test_profiler_gives_nested_time_to_the_outer_piece_and_frames_hide_nothing():
    profiler = profile_run["Profiler"]()
    inner = profiler.wrap(lambda: time.sleep(0.01), "inner")
    outer = profiler.wrap(lambda: inner(), "outer")
    framed = profiler.frame(lambda: inner(), "fit")
    outer()
    framed()
    assert set(profiler.seconds) == {"outer", "inner"} and profiler.calls == {"outer": 1, "inner": 1}
    assert profiler.seconds["outer"] >= 0.01 and profiler.seconds["inner"] >= 0.01


def test_profile_accounts_for_every_step_and_no_second_twice():
    spec = RunSpec(arm="joint", method="joint", seed=0,
                   data={"name": "synthetic", "sizes": (96, 48, 48), "dim": 8, "num_classes": 3},
                   train={"epochs": 2, "batch_size": 16, "optimizer": "sgd", "lr": 0.03}, monitor="shapley",
                   measures=("probe",))
    table, record = profile_run["profile"](spec)
    rows = table.set_index("piece")
    steps = 2 * 96 // 16
    assert rows.loc["forward (training_step)", "calls"] == steps and rows.loc["backward", "calls"] == steps
    assert rows.loc["optimiser step", "calls"] == steps and rows.loc["Shapley monitor", "calls"] == 2
    assert rows.loc["validation", "calls"] == 2 and rows.loc["probe: logistic regression fit", "calls"] == 2
    other = rows.loc["other (set-up, logging, history rows, best-weights copy)"]
    assert other["seconds"] >= 0 and other["CPU s"] >= -0.05  # pieces never overlap
    assert rows.loc["= run", "wall %"] == 100 and record["epochs"] == 2
    total = rows.loc["= training steps (the four step pieces)", "seconds"] + rows.loc["= everything else", "seconds"]
    assert total == pytest.approx(rows.loc["= run", "seconds"])
