"""The Baselines chapter's sanity runs, claims and preconditions, and its MMPareto lr table."""

from __future__ import annotations

import pandas as pd
import pytest

from mmrepro.analysis import baselines as b

BOOK = b.SIZES["book"]


def test_the_book_grid_is_84_runs_of_14_arms_on_6_seeds():
    specs = b.sanity_specs(BOOK)
    assert len(specs) == 84
    assert sorted({s.arm for s in specs}) == sorted([
        "joint", "audio alone", "image alone", "Greedy, no re-balancing", "OGM-GE", "PMR", "MMPareto", "AGM",
        "Greedy", "G-Blending", "MSLR", "EAU", "PDF", "MMDynamics"])
    assert {s.seed for s in specs} == {0, 1, 2, 3, 4, 5}


def test_the_host_is_the_iibalance_chapters_sgd_recipe_with_summed_heads():
    joint = next(s for s in b.sanity_specs(BOOK) if s.arm == "joint")
    assert joint.data == {"name": "av_digits"}
    assert joint.build == {"encoder": "mlp", "fusion": "sum"}
    assert joint.train == {"epochs": 100, "patience": 8, "batch_size": 64, "optimizer": "sgd", "lr": 0.05,
                           "momentum": 0.9, "weight_decay": 1e-4, "lr_step": 20, "lr_gamma": 0.2}
    assert joint.measures == ("probe",)


@pytest.mark.parametrize("arm, build, kwargs", [
    ("audio alone", {"encoder": "mlp", "modality": "audio"}, {}),
    ("Greedy", {"encoder": "mlp"}, {}),
    ("Greedy, no re-balancing", {"encoder": "mlp"}, {"epsilon": 1e9}),
    ("OGM-GE", {"encoder": "mlp", "fusion": "sum"}, {"alpha": 0.8}),
    ("EAU", {"encoder": "mlp"}, {"noise_epoch": 0}),
])
def test_each_arm_is_built_as_the_iibalance_chapter_builds_it(arm, build, kwargs):
    spec = next(s for s in b.sanity_specs(BOOK) if s.arm == arm)
    assert (spec.build, spec.method_kwargs) == (build, kwargs)


def test_only_the_dynamic_fusion_baselines_measure_the_corrupted_weight():
    weighted = {s.arm for s in b.sanity_specs(BOOK) if b.WEIGHT in s.measures}
    assert weighted == {"EAU", "PDF", "MMDynamics"}


def test_the_lr_runs_are_three_epochs_at_the_profile_lr_and_a_fifth():
    specs = b.lr_specs(BOOK)
    assert len(specs) == 15
    assert {(s.arm, s.train["lr"]) for s in specs} == {
        ("MMPareto, lr", 0.05), ("MMPareto without the magnitude step, lr", 0.05), ("MMPareto, lr / 5", 0.01),
        ("joint, lr", 0.05), ("joint, lr / 5", 0.01)}
    assert {(s.train["epochs"], s.train["patience"]) for s in specs} == {(3, None)}
    assert [s.method_kwargs for s in specs if s.arm.startswith("MMPareto without")] == [{"rescale": False}] * 3


def test_claims_name_the_metric_and_control_of_each_paper_effect():
    got = {c.name: (c.metric, c.control, c.delta) for c in b.claims()}
    assert got == {
        "OGM-GE": ("probe_audio", "joint", 0.03), "PMR": ("probe_audio", "joint", 0.03),
        "MMPareto": ("probe_audio", "joint", 0.03), "AGM": ("probe_audio", "joint", 0.03),
        "Greedy": ("accuracy", "Greedy, no re-balancing", 0.01), "G-Blending": ("accuracy", "joint", 0.01),
        "MSLR": ("accuracy", "joint", 0.01), "EAU": ("weight_drop", None, 0.02), "PDF": ("weight_drop", None, 0.02),
        "MMDynamics": ("weight_drop", None, 0.02)}
    assert all(c.kind == "sanity" for c in b.precondition_claims())


def _checks(failing: set[str]) -> pd.DataFrame:
    names = [c.name for c in b.precondition_claims()]
    return pd.DataFrame({"outcome": ["sanity check: fails" if n in failing else "sanity check: holds" for n in names]},
                        index=names)


RUNS = pd.DataFrame({"arm": ["joint", "joint", "Greedy, no re-balancing", "Greedy, no re-balancing"],
                     "accuracy": [0.97, 0.97, 0.99, 0.99]})


def test_preconditions_when_every_check_holds():
    pre = b.preconditions(_checks(set()), RUNS)
    assert pre["OGM-GE"] == (True, "holds")
    assert pre["EAU"] == (True, "holds")
    assert pre["G-Blending"] == (True, "joint leaves 3.0 points below 100 %")
    assert pre["Greedy"] == (False, "Greedy, no re-balancing leaves 1.0 points below 100 %")


def test_a_failed_check_makes_exactly_its_claims_untestable():
    pre = b.preconditions(_checks({"precondition: joint training under-trains the audio encoder",
                                   "precondition: MMDynamics learns"}), RUNS)
    assert {k for k, (ok, _) in pre.items() if not ok} == {"OGM-GE", "PMR", "MMPareto", "AGM", "MMDynamics", "Greedy"}
    assert pre["AGM"] == (False, "fails: joint training under-trains the audio encoder")
    assert pre["MMDynamics"] == (False, "fails: MMDynamics learns")


def _record(arm: str, seed: int, lr: float, method: str, probe: float, acc: float, rescale: bool | None = None) -> dict:
    kwargs = {} if rescale is None else {"rescale": rescale}
    return {"arm": arm, "seed": seed, "spec": {"train": {"lr": lr}, "method": method, "method_kwargs": kwargs},
            "metrics": {"probe_audio": probe, "accuracy": acc}}


def test_lr_table_averages_each_arm_over_seeds():
    records = [_record("MMPareto, lr", 0, 0.05, "mmpareto", 0.2, 0.9), _record("MMPareto, lr", 1, 0.05, "mmpareto", 0.4, 0.8),
               _record("MMPareto without the magnitude step, lr", 0, 0.05, "mmpareto", 0.7, 0.9, rescale=False),
               _record("joint, lr", 0, 0.05, "joint", 0.6, 0.95), _record("other", 0, 0.05, "joint", 0.0, 0.0)]
    t = b.lr_table(records)
    assert list(t.index) == ["MMPareto, lr", "MMPareto without the magnitude step, lr", "joint, lr"]
    assert t.loc["MMPareto, lr", ["audio probe", "audio probe min", "audio probe max", "accuracy", "seeds"]].tolist() \
        == pytest.approx([0.3, 0.2, 0.4, 0.85, 2])
    assert t["magnitude step"].tolist() == [True, False, False]


def test_lr_table_without_lr_records_is_an_error():
    with pytest.raises(ValueError, match="no records of the lr arms"):
        b.lr_table([_record("joint", 0, 0.05, "joint", 0.5, 0.9)])


def test_chapters_using_finds_a_class_call_or_a_registry_name(tmp_path):
    (tmp_path / "a.md").write_text("m = OGMGE(model)")
    (tmp_path / "b.md").write_text('spec(method="ogm_ge")')
    (tmp_path / "c.md").write_text("OGMGE is mentioned; ogm_ge too")
    (tmp_path / "baselines.md").write_text("OGMGE(model)")
    assert b.chapters_using("OGMGE", "ogm_ge", tmp_path) == "a, b"
    assert b.chapters_using("PDF", "pdf", tmp_path) == "none yet"
