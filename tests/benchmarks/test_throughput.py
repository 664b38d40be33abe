"""The throughput benchmark: its loops train the same model and are timed against the official loop; its command line."""

from __future__ import annotations

import pytest
import torch

from .scripts import load

throughput = load("throughput")


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
