"""The step-time benchmark: its table on a toy run, and its command line."""

from __future__ import annotations

import json

import pytest

from mmrepro import methods

from .scripts import load


step_time = load("step_time")


def test_time_steps_table(synthetic):
    factories = {name: (lambda name=name: methods.build(name, synthetic)) for name in ("joint", "ogm_ge")}
    table = step_time["time_steps"](factories, synthetic, batch_size=16, steps=2, device="cpu", warmup=1, repeats=2)
    assert list(table.columns) == ["method", "ms_per_step", "relative_to_joint"]
    assert table["method"].tolist() == ["joint", "ogm_ge"] and (table["ms_per_step"] > 0).all()
    assert table.set_index("method").loc["joint", "relative_to_joint"] == 1.0
    assert table.attrs["device"].startswith("cpu")
    with pytest.raises(ValueError, match="'joint'"):
        step_time["time_steps"]({"late": factories["ogm_ge"]}, synthetic, 16, 1)


def test_command_line_writes_a_record(tmp_path):
    out = tmp_path / "step_time.json"
    step_time["main"](["--dataset", "synthetic", "--methods", "late", "--steps", "1", "--warmup", "0",
                       "--repeats", "1", "--batch-size", "50", "--out", str(out)])
    record = json.loads(out.read_text())
    assert [r["method"] for r in record["results"]] == ["joint", "late"]
    assert {"git_commit", "mmrepro", "device", "config"} <= set(record)
    with pytest.raises(SystemExit):
        step_time["main"](["--methods", "nonsense"])


def test_steps_can_be_timed_at_a_later_epoch(synthetic):
    seen = []

    class Staged(methods.REGISTRY["joint"]):
        def epoch_begin(self, epoch, ctx):
            seen.append((epoch, ctx.epoch))

    factories = {"joint": lambda: methods.build("joint", synthetic), "staged": lambda: Staged(methods.build("joint", synthetic).model)}
    table = step_time["time_steps"](factories, synthetic, 16, 1, "cpu", 0, 1, epoch=2, epochs=5, patience=2)
    assert table["method"].tolist() == ["joint", "staged"] and seen == [(0, 0), (1, 1), (2, 2)]
    with pytest.raises(ValueError, match="epoch < epochs"):
        step_time["time_steps"](factories, synthetic, 16, 1, "cpu", epoch=5, epochs=5)
