"""The speed benchmarks: the run profiler's accounting, the loops' tables, the step variants, the grid layouts."""

from __future__ import annotations

import runpy
import time
from pathlib import Path

import pytest
import torch

from mmrepro.experiment import RunSpec

BENCH = Path(__file__).resolve().parent.parent / "benchmarks"
profile_run = runpy.run_path(str(BENCH / "profile_run.py"))  # benchmarks/ is a folder of scripts, not a package
throughput = runpy.run_path(str(BENCH / "throughput.py"))
step_options = runpy.run_path(str(BENCH / "step_options.py"))
grid_workers = runpy.run_path(str(BENCH / "grid_workers.py"))


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


def test_throughput_loops_train_the_same_model_and_compare_with_the_official_loop(synthetic):
    cfg = throughput["_config"]("cpu", 16, None)
    loops = throughput["build_loops"]("joint", synthetic, cfg, torch.device("cpu"), "auto", False, with_official=True)
    assert list(loops) == ["official", "fit", "resident"]
    table = throughput["time_loops"](loops, torch.device("cpu"), 16, steps=2, warmup=1, repeats=2,
                                     reference="official")
    assert table["loop"].tolist() == ["official", "fit", "resident"]
    assert (table[["samples_per_s", "samples_per_cpu_s"]] > 0).all().all()
    assert table.set_index("loop").loc["official", "speedup_vs_official"] == 1.0
    assert loops["official"].total_loss > 0  # the official loop reads the loss every step


def test_throughput_command_line_times_joint_and_each_named_method():
    frame = throughput["main"](["--dataset", "synthetic", "--encoder", "auto", "--methods", "joint", "late",
                                "--steps", "1", "--warmup", "0", "--repeats", "1", "--batch-size", "50"])
    assert frame["method"].tolist() == ["joint"] * 3 + ["late"] * 2
    with pytest.raises(SystemExit):
        throughput["main"](["--methods", "nonsense"])


def test_step_variants_start_from_the_same_weights(synthetic):
    cfg = throughput["_config"]("cpu", 16, None)
    variants = {name: step_options["VARIANTS"][name] for name in ("plain", "channels_last", "SGD foreach")}
    loops, first = step_options["build"](variants, "joint", "auto", synthetic, cfg, torch.device("cpu"), 0)
    weights = [torch.cat([p.flatten() for p in loop.method.parameters()]) for loop in loops.values()]
    assert all(torch.equal(weights[0], w) for w in weights[1:]) and set(first) == set(variants)
    assert loops["SGD foreach"].optimizer.defaults["foreach"] is True


def test_grid_workers_pairs_its_arms_by_seed():
    specs = grid_workers["specs"](seeds=2, epochs=1, subsample=64)
    assert [(s.arm, s.seed) for s in specs] == [("joint", 0), ("joint", 1), ("OGM-GE", 0), ("OGM-GE", 1)]
    assert {s.subsample for s in specs} == {64} and all(s.train["epochs"] == 1 for s in specs)
