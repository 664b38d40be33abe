"""The batch dict and its datasets: DictDataset, Splits, metadata keys, loaders, row splits."""

from __future__ import annotations

import pytest
import torch

from mmrepro.data import DictDataset, train_loader
from mmrepro.data.core import UID, iterate, split_rows
from mmrepro.data.synthetic import make_synthetic


def _toy(n: int = 10) -> DictDataset:
    tensors = {"a": torch.arange(n * 2.0).view(n, 2), "b": torch.randn(n, 3), "label": torch.arange(n)}
    return DictDataset(tensors, ("a", "b"))


def test_getitems_matches_getitem():
    ds = _toy()
    batch = ds.batch([3, 1, 7])
    for key in ("a", "b", "label"):
        assert torch.equal(batch[key], torch.stack([ds[i][key] for i in (3, 1, 7)]))


def test_subset_copies_and_select_keeps_meta():
    ds = _toy()
    sub = ds.subset([0, 2])
    sub.tensors["a"][0, 0] = -1.0
    assert ds.tensors["a"][0, 0] == 0.0, "subset must copy, not view"
    only_a = ds.select(["a"])
    assert only_a.modalities == ("a",) and "b" not in only_a.tensors and "label" in only_a.tensors
    extra = ds.with_tensors(c=torch.zeros(10, 1))
    assert extra.modalities == ("a", "b", "c")


def test_dictdataset_errors_name_the_problem():
    with pytest.raises(KeyError, match="label"):
        DictDataset({"a": torch.zeros(3)}, ("a",))
    with pytest.raises(KeyError, match=r"\['b'\]"):
        DictDataset({"a": torch.zeros(3), "label": torch.zeros(3)}, ("a", "b"))
    with pytest.raises(ValueError, match="same length"):
        DictDataset({"a": torch.zeros(3), "label": torch.zeros(4)}, ("a",))
    with pytest.raises(KeyError, match="unknown modalities"):
        _toy().select(["zzz"])


def test_splits_select_and_split_names(synthetic):
    one = synthetic.select(["m1"])
    assert one.modalities == ("m1",) and one.input_shapes() == {"m1": (8,)}
    assert len(one.test) == len(synthetic.test)
    with pytest.raises(ValueError, match="'train', 'val', 'test'"):
        synthetic.split("dev")


def test_global_batch_is_the_same_for_one_and_two_processes():
    ds = _toy(16)
    one, sampler = train_loader(ds, batch_size=4, seed=3)
    sampler.set_epoch(1)
    ranks = []
    for rank in (0, 1):
        loader, s = train_loader(ds, batch_size=4, seed=3, rank=rank, world_size=2)
        s.set_epoch(1)
        ranks.append(list(loader))
    for step, batch in enumerate(one):
        merged = torch.cat([ranks[0][step]["label"], ranks[1][step]["label"]])
        assert sorted(merged.tolist()) == sorted(batch["label"].tolist())
    with pytest.raises(ValueError, match="divisible"):
        train_loader(ds, batch_size=5, seed=0, world_size=2)


def test_iterate_covers_every_example_in_order():
    ds = _toy(10)
    assert torch.equal(torch.cat([b["label"] for b in iterate(ds, batch_size=4)]), torch.arange(10))


def test_subsample_train(synthetic):
    small = synthetic.subsample_train(10, seed=1)
    assert len(small.train) == 10 and len(small.val) == len(synthetic.val) and len(small.test) == len(synthetic.test)
    assert torch.equal(small.train.tensors["m0"], synthetic.subsample_train(10, seed=1).train.tensors["m0"])
    rows = [r.tolist() for r in synthetic.train.tensors["m0"]]
    assert all(r.tolist() in rows for r in small.train.tensors["m0"])
    with pytest.raises(ValueError, match="1..96"):
        synthetic.subsample_train(97)


def test_keys_other_than_modalities_and_label_must_be_marked_as_metadata():
    with pytest.raises(KeyError, match="'_speaker'"):
        DictDataset({"a": torch.zeros(3, 2), "speaker": torch.zeros(3), "label": torch.zeros(3)}, ("a",))
    ds = DictDataset({"a": torch.zeros(3, 2), "_speaker": torch.arange(3), "label": torch.zeros(3)}, ("a",))
    assert ds.meta == ("_speaker",) and ds.modalities == ("a",)
    assert ds.with_tensors(_mask=torch.ones(3), b=torch.ones(3, 1)).modalities == ("a", "b")
    assert "_speaker" in ds.select(["a"]).tensors, "select keeps metadata"


def test_batch_is_the_dataloader_fetch_and_split_rows_checks_sizes():
    ds = _toy()
    assert all(torch.equal(ds.batch(range(2, 5))[k], ds.__getitems__([2, 3, 4])[k]) for k in ds.tensors)
    train, val, test = split_rows(ds.tensors, ds.modalities, (5, 3, 2))
    labels = torch.cat([train.tensors["label"], val.tensors["label"], test.tensors["label"]])
    assert torch.equal(labels, torch.arange(10))
    with pytest.raises(ValueError, match="sum to 9"):
        split_rows(ds.tensors, ds.modalities, (5, 3, 1))


def test_with_uids_are_unique_across_splits():
    splits = make_synthetic(sizes=(7, 3, 4)).with_uids()
    uids = torch.cat([splits.split(s).tensors[UID] for s in ("train", "val", "test")])
    assert torch.equal(uids, torch.arange(14))
    assert UID not in splits.modalities
