"""The grid-workers benchmark: its arms are paired by seed."""

from __future__ import annotations

from .scripts import load

grid_workers = load("grid_workers")


def test_grid_workers_pairs_its_arms_by_seed():
    specs = grid_workers["specs"](seeds=2, epochs=1, subsample=64)
    assert [(s.arm, s.seed) for s in specs] == [("joint", 0), ("joint", 1), ("OGM-GE", 0), ("OGM-GE", 1)]
    assert {s.subsample for s in specs} == {64} and all(s.train["epochs"] == 1 for s in specs)
