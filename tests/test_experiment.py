"""The seed loop (sequential, forked pool, subsampled, with a per-run measure, several arms) and the seed statistics."""

from __future__ import annotations

import pandas as pd
import pytest
import torch

from mmrepro.evaluate import evaluate, shapley_monitor
from mmrepro.experiment import format_pm, paired_difference, spread, train_arms, train_seeds
from mmrepro.methods import Joint
from mmrepro.models import build_model
from mmrepro.train import TrainConfig

CFG = TrainConfig(epochs=2, batch_size=16, lr=1e-2, device="cpu", progress=False)


def _factory(splits):
    return lambda: Joint(build_model(splits, hidden=16, out_dim=8))


def test_a_forked_pool_gives_the_same_runs_as_a_sequence(synthetic):
    alone = train_seeds(_factory(synthetic), synthetic, CFG, seeds=[0, 1])
    pooled = train_seeds(_factory(synthetic), synthetic, CFG, seeds=[0, 1], workers=2)
    for a, b in zip(alone, pooled):
        assert a.seed == b.seed
        assert torch.equal(a.method.model.fusion.fc.weight, b.method.model.fusion.fc.weight)
        assert a.fit.history["val_accuracy"].tolist() == b.fit.history["val_accuracy"].tolist()


def test_subsample_trains_every_seed_on_the_same_rows(synthetic):
    sizes = []
    factory = _factory(synthetic)

    def measure(run):
        sizes.append(run.fit.history["train_loss"].notna().all())
        return {"test_accuracy": evaluate(run.method, synthetic.test)["accuracy"]}

    runs = train_seeds(factory, synthetic, CFG, seeds=[0, 1], subsample=32, measure=measure)
    assert [set(r.measures) for r in runs] == [{"test_accuracy"}] * 2 and all(sizes)
    small = synthetic.subsample_train(32)
    again = train_seeds(factory, small, CFG, seeds=[0])[0]
    assert torch.equal(again.method.model.fusion.fc.weight, runs[0].method.model.fusion.fc.weight), \
        "subsample=n is splits.subsample_train(n)"


def test_shapley_monitor_logs_one_value_per_modality(synthetic):
    run = train_seeds(_factory(synthetic), synthetic, CFG, seeds=[0], monitor=shapley_monitor)[0]
    assert {"shapley_m0", "shapley_m1"} <= set(run.fit.history.columns)
    last = run.fit.history.iloc[-1]
    assert last["shapley_m0"] > last["shapley_m1"], "m0 is the informative modality of the fixture"
    single = train_seeds(_factory(synthetic.select(["m0"])), synthetic.select(["m0"]), CFG, seeds=[0],
                         monitor=shapley_monitor)[0]
    assert not any(c.startswith("shapley") for c in single.fit.history.columns)


def test_spread_is_the_sample_std_and_zero_for_one_value():
    assert spread([1.0, 3.0]) == pytest.approx(2 ** 0.5)
    assert spread([5.0]) == 0.0


def test_train_arms_trains_every_arm_on_every_seed_in_one_pool(synthetic):
    arms = {"small": _factory(synthetic), "joint": lambda: Joint(build_model(synthetic, hidden=8, out_dim=4))}
    runs = train_arms(arms, synthetic, CFG, seeds=[0, 1], workers=2)
    assert {arm: [r.seed for r in rs] for arm, rs in runs.items()} == {"small": [0, 1], "joint": [0, 1]}
    alone = train_seeds(arms["joint"], synthetic, CFG, seeds=[1])[0]
    assert torch.equal(alone.method.model.fusion.fc.weight, runs["joint"][1].method.model.fusion.fc.weight)


def test_paired_difference_matches_seeds_and_format_pm_reads_mean_and_spread():
    frame = pd.DataFrame({"arm": ["a", "a", "b", "b", "b"], "seed": [0, 1, 0, 1, 2], "acc": [0.6, 0.8, 0.5, 0.5, 0.9]})
    diff = paired_difference(frame, "acc", "a", "b")
    assert diff.index.tolist() == [0, 1] and diff.round(6).tolist() == [0.1, 0.3], "seed 2 has no pair"
    assert format_pm(diff, signed=True, unit=" pts") == "+20.0 ± 14.1 pts"
    assert format_pm([0.5]) == "50.0 ± 0.0"
