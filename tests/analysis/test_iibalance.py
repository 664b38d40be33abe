"""The IIBalance chapter's analysis: arm builds, MMPareto's lr chosen on validation, per-class views, preconditions;
and the complementary-cues dataset's image swap."""

from __future__ import annotations

import pandas as pd
import pytest
import torch

from mmrepro.analysis.iibalance import build_options, class_view, preconditions, select_on_validation
from mmrepro.data import LOADERS
from mmrepro.data.complementary import NAME, swap_within


def record(arm: str, seed: int, val: float, correct: list[float], labels: list[int]) -> dict:
    return {"arm": arm, "seed": seed, "selected_epoch": 1,
            "history": [{"epoch": 0, "val_accuracy": 0.0}, {"epoch": 1, "val_accuracy": val}],
            "metrics": {"accuracy": sum(correct) / len(correct)}, "items": {"accuracy": correct}, "labels": labels}


def test_build_options_give_sum_fusion_except_greedy_and_mlp_on_mfeat():
    assert build_options({"name": "av_digits"}, "ogm_ge", {"alpha": 0.8}, "cnn") == (
        {"encoder": "cnn", "fusion": "sum"}, {"alpha": 0.8})
    assert build_options({"name": "mfeat"}, "greedy", {}, "cnn") == ({"encoder": "mlp"}, {})
    assert build_options({"name": "av_digits"}, "unimodal", {"modality": "audio"}, "mlp") == (
        {"encoder": "mlp", "modality": "audio"}, {})
    with pytest.raises(ValueError, match="modality"):
        build_options({"name": "av_digits"}, "unimodal", {}, "mlp")
    with pytest.raises(ValueError, match="name a dataset"):
        build_options({}, "joint", {}, "mlp")


def test_selection_uses_validation_not_test():
    # the fast lr validates worse but tests better: the slow one must be chosen
    recs = [record("x @ fast", s, 0.5, [1.0, 1.0], [0, 1]) for s in (0, 1)]
    recs += [record("x @ slow", s, 0.6, [0.0, 1.0], [0, 1]) for s in (0, 1)]
    chosen, table = select_on_validation(recs, {"x": ["x @ fast", "x @ slow"]})
    assert [r["arm"] for r in chosen] == ["x", "x"]
    assert all(r["items"]["accuracy"] == [0.0, 1.0] for r in chosen)
    assert table.set_index("candidate")["chosen"].to_dict() == {"x @ fast": False, "x @ slow": True}
    with pytest.raises(KeyError, match="candidate arm"):
        select_on_validation(recs, {"x": ["missing"]})
    with pytest.raises(ValueError, match="no candidate"):
        select_on_validation(recs, {"x": []})


def test_class_view_keeps_only_the_named_classes():
    recs = [record("a", 0, 0.5, [1.0, 0.0, 1.0, 0.0], [0, 1, 5, 6])]
    view = class_view(recs, {"a [low]": "a"}, [0, 1])
    assert view[0]["arm"] == "a [low]" and view[0]["items"] == {"accuracy": [1.0, 0.0]} and view[0]["metrics"] == {}
    with pytest.raises(ValueError, match="no test item"):
        class_view(recs, {"b": "a"}, [9])
    with pytest.raises(KeyError, match="no records"):
        class_view(recs, {"b": "missing"}, [0])


def test_preconditions_need_every_sanity_row_and_headroom():
    sanity = pd.DataFrame({"outcome": ["sanity check: holds", "sanity check: fails"]}, index=["weak", "budget"])
    out = preconditions(sanity, {"default": 0.90, "mfeat": 0.995}, {
        "ok": ["weak", "headroom:default"], "no room": ["headroom:mfeat"], "fails": ["weak", "budget"]}, 0.01)
    assert out["ok"][0] and "10.0 points" in out["ok"][1]
    assert not out["no room"][0] and "no headroom (mfeat)" in out["no room"][1]
    assert out["fails"] == (False, "fails: budget")
    with pytest.raises(KeyError, match="sanity row"):
        preconditions(sanity, {}, {"c": ["unknown"]}, 0.01)
    with pytest.raises(KeyError, match="joint accuracy"):
        preconditions(sanity, {}, {"c": ["headroom:three"]}, 0.01)


def test_swap_permutes_only_the_named_classes_among_themselves():
    labels = torch.tensor([0, 1, 2, 0, 1, 2, 3, 3])
    images = torch.arange(8.0).view(8, 1) * torch.ones(8, 3)
    out = swap_within(images, labels, [0, 1], torch.Generator().manual_seed(0))
    moved = labels.lt(2)
    assert torch.equal(out[~moved], images[~moved])  # other classes untouched
    assert sorted(out[moved, 0].tolist()) == sorted(images[moved, 0].tolist())  # a permutation of the same rows
    assert NAME in LOADERS  # importable by name once mmrepro.methods is imported (every run imports it)


def test_bad_classes_are_named_before_any_data_is_read():
    from mmrepro.data.complementary import load_av_digits_complementary
    with pytest.raises(ValueError, match="distinct digits"):
        load_av_digits_complementary(classes=(0, 0, 1))
    with pytest.raises(ValueError, match="distinct digits"):
        load_av_digits_complementary(classes=(3, 10))
    with pytest.raises(ValueError, match="at least two"):
        load_av_digits_complementary(classes=(3,))


def test_importing_the_methods_registers_the_dataset_in_a_fresh_process():
    import subprocess
    import sys
    code = f"import mmrepro.methods, mmrepro.data as d; assert {NAME!r} in d.LOADERS"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True).returncode == 0
