"""The MoIR chapter's analysis of its records: views of one run, convergence, intervals and claims."""

from __future__ import annotations

import pytest

from mmrepro import verdict
from mmrepro.analysis import moir

METRICS = ("accuracy", "accuracy_randomised", "drop_image", "drop_text")
SHARES = ("share_image", "share_text", "shift_image_degraded", "shift_text_degraded")


def record(arm: str, seed: int, views: dict[str, dict[str, float]], baseline_best: int = 4, epochs: int = 10,
           best: int = 3) -> dict:
    """A run record whose views score each per-item metric as ``value`` on four items, and each share as given."""
    metrics = {"agree_image": 0.9, "overlap_image": 0.95, "accuracy": 0.1}
    items = {}
    for view, values in views.items():
        for m in METRICS:
            items[f"{m}@{view}"] = [values.get(m, 0.5)] * 4
            metrics[f"{m}@{view}"] = values.get(m, 0.5)
        metrics.update({f"{m}@{view}": values.get(m, 0.2) for m in SHARES})
    first = {"epoch": 0, "val_accuracy": 0.5}
    if "baseline" in views:
        first.update(baseline_epochs=20.0, baseline_best_epoch=float(baseline_best), baseline_converged=0.0)
    return {"arm": arm, "seed": seed, "metrics": metrics, "items": items, "history": [first], "epochs": epochs,
            "best_epoch": best, "converged": best < epochs - 2, "labels": list(range(4)),
            "spec": {"train": {"patience": 3}, "method_kwargs": {"baseline": {"patience": 8}}}}


def gates_run(seed: int, **kwargs) -> dict:
    return record("causal: baseline, (a) and (b)", seed, {"baseline": {"share_text": 0.2, "share_image": 0.8},
                                                          "plug_in": {"share_text": 0.3},
                                                          "gates": {"share_text": 0.4, "accuracy": 0.9}}, **kwargs)


def test_one_gates_run_becomes_three_arms_with_their_own_metrics_and_convergence():
    views = moir.regime_records([gates_run(0), record("bidirectional: x", 0, {"baseline": {}}, baseline_best=19),
                                 record("causal: (c)", 1, {"trained": {"accuracy": 0.7}})])
    arms = [v["arm"] for v in views]
    assert arms == ["baseline", "(a) plug-in", "(b) gates only", "bidirectional: baseline",
                    "(c) trained with router (ours)"]
    base, plug, gates, bi, trained = views
    assert base["metrics"]["share_text"] == 0.2 and plug["metrics"]["share_text"] == 0.3
    assert gates["items"]["accuracy"] == [0.9] * 4 and set(gates["items"]) == set(METRICS)
    assert base["metrics"]["agree_image"] == 0.9 and "accuracy@baseline" not in base["metrics"]
    assert base["metrics"]["accuracy"] == 0.5, "the run's own accuracy (the last view's) is not a view's"
    # the frozen baseline stalled for 15 epochs with patience 8: converged; its best epoch 19 of 20 is not
    assert base["converged"] and plug["converged"] and (base["epochs"], base["best_epoch"]) == (20, 4)
    assert gates["converged"] and not bi["converged"] and trained["converged"]
    assert verdict.run_converged(base) and not verdict.run_converged(bi)


def test_the_tuned_gates_need_both_fits_converged():
    (_, _, gates), = [moir.regime_records([gates_run(0, best=9)])]
    assert not gates["converged"]
    (_, _, gates), = [moir.regime_records([gates_run(0, baseline_best=19)])]
    assert not gates["converged"]


def test_records_without_views_are_refused():
    run = gates_run(0)
    run["metrics"] = {"accuracy": 0.5}
    with pytest.raises(ValueError, match="per-view"):
        moir.regime_records([run])
    run = record("causal: x", 0, {"gates": {}})
    with pytest.raises(ValueError, match="frozen baseline"):
        moir.regime_records([run])
    with pytest.raises(ValueError, match="unknown view"):
        moir.arm_name("causal", "frozen")


def test_convergence_counts_each_arm():
    table = moir.convergence(moir.regime_records([gates_run(0), gates_run(1, baseline_best=19)]))
    assert table.loc["baseline", "runs"] == 2 and table.loc["baseline", "converged"] == 1
    assert table.loc["(b) gates only", "converged"] == 1 and table.loc["baseline", "epochs_max"] == 20


def test_paired_gives_an_interval_per_pair_and_a_dash_without_two_seeds():
    views = moir.regime_records([gates_run(0), gates_run(1), gates_run(2)])
    views[5]["items"]["accuracy"] = [0.9, 0.9, 1.0, 0.8]  # seed 1's tuned gates: an item-level spread
    evidence = verdict.arms_from_records(views)
    evidence["(c) trained with router (ours)"] = verdict.Arm([0], {"accuracy": evidence["baseline"].scores["accuracy"][:1]})
    table = moir.paired(evidence, [("(b) gates only", "baseline"), ("(c) trained with router (ours)", "baseline")],
                        {"accuracy": "acc."})
    assert table.loc["(b) gates only", "acc."].startswith("+40.0 [")
    assert table.loc["(c) trained with router (ours)", "acc."] == "—"


def test_claims_name_the_weaker_stream_and_fail_preconditions_where_the_setting_cannot_show_the_effect():
    paper = dict.fromkeys(("balance", "accuracy", "robustness", "dominance"), "qualitative")
    views = moir.regime_records([gates_run(s) for s in range(3)])
    claims, pre = moir.claims(views, paper)
    assert len(claims) == 8 and set(pre) == {c.name for c in claims}
    assert claims[0].metric == "share_text" and "(text)" in claims[0].name
    assert all(c.control == "baseline" for c in claims)
    assert pre[claims[0].name][0], "text share 20% < 40%: imbalanced"
    assert pre[claims[2].name][0], "baseline accuracy 50%: headroom"
    assert pre[claims[4].name] == (True, pre[claims[4].name][1]) and "50.0 points" in pre[claims[4].name][1]
    table = verdict.judge(claims, verdict.arms_from_records(views), preconditions=pre)
    assert table.loc[claims[1].name, "effect"] == pytest.approx(0.2)
    for v in views:
        v["metrics"].update(accuracy=0.99, drop_image=0.0)
    _, pre = moir.claims(views, paper)
    assert not pre[claims[2].name][0] and not pre[claims[4].name][0] and not pre[claims[6].name][0]
    with pytest.raises(ValueError, match="baseline"):
        moir.claims(views[1:2], paper)
    with pytest.raises(KeyError, match="dominance"):
        moir.claims(views, {"balance": ""})
