"""Unjudged paired differences for the chapters' tables: shared seeds, against zero, and too few seeds."""

from __future__ import annotations

import numpy as np

from mmrepro import verdict
from mmrepro.analysis import pairs


def _arms() -> dict[str, verdict.Arm]:
    rng = np.random.default_rng(0)
    base = rng.random((4, 50)) < 0.7
    return {"A": verdict.Arm([0, 1, 2, 3], {"acc": base.astype(float), "rho": np.array([0.9, 0.8, 0.85, 0.95])}),
            "B": verdict.Arm([1, 2, 3, 4], {"acc": base[[1, 2, 3, 0]].astype(float) * 0.0,
                                           "rho": np.array([-0.1, 0.0, 0.1, 0.4])}),
            "lonely": verdict.Arm([7], {"acc": base[:1].astype(float)})}


def test_interval_uses_only_shared_seeds_and_formats_the_comparison():
    arms = _arms()
    text = pairs.interval(arms, "A", "B", "acc")
    shared = arms["A"].take("acc", [1, 2, 3])
    assert text.startswith(f"{100 * shared.mean():+.1f} [")
    assert pairs.interval(arms, "A", "B", "rho", 1.0, 2) == verdict.fmt_interval(
        {k: getattr(verdict.compare(np.array([0.8, 0.85, 0.95]), np.array([-0.1, 0.0, 0.1])), k)
         for k in ("effect", "low", "high")}, 1.0, 2)


def test_without_a_control_the_treatment_is_compared_with_zero_on_all_its_seeds():
    arms = _arms()
    cmp = pairs.paired(arms, "A", None, "rho")
    assert abs(cmp.effect - 0.875) < 1e-12
    assert cmp.low < cmp.effect < cmp.high


def test_fewer_than_two_shared_seeds_give_no_comparison_and_a_dash():
    arms = _arms()
    assert pairs.paired(arms, "lonely", "A", "acc") is None
    assert pairs.interval(arms, "lonely", "A", "acc") == "—"
