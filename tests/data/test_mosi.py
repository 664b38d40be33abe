"""CMU-MOSI/MOSEI pickle loader on a fixture file, and the community's sentiment metrics."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch

from mmrepro.data.core import UID
from mmrepro.data.download import DataError
from mmrepro.data.mosi import load_mosi
from mmrepro.evaluate import sentiment_metrics


def _write_fixture(path, sizes=(6, 3, 4), length=5, dims=(300, 74, 47)):
    rng = np.random.default_rng(0)
    raw = {}
    for split, n in zip(("train", "valid", "test"), sizes):
        audio = rng.normal(size=(n, length, dims[1])).astype(np.float32)
        audio[0, 0, 0] = -np.inf  # as in the MOSI pickle
        raw[split] = {"text": rng.normal(size=(n, length, dims[0])), "audio": audio,
                      "vision": rng.normal(size=(n, length, dims[2])),
                      "labels": rng.uniform(-3, 3, size=(n, 1, 1)), "id": np.array([[f"v{i}", "0"] for i in range(n)])}
    path.write_bytes(pickle.dumps(raw))
    return raw


def test_load_mosi_reads_the_aligned_pickle_layout(tmp_path):
    raw = _write_fixture(tmp_path / "mosi_data.pkl")
    splits = load_mosi("mosi", path=tmp_path / "mosi_data.pkl")
    assert splits.task == "regression" and splits.num_classes == 1
    assert splits.input_shapes() == {"text": (5, 300), "audio": (5, 74), "vision": (5, 47)}
    assert [len(splits.train), len(splits.val), len(splits.test)] == [6, 3, 4]
    assert splits.val.tensors["label"].shape == (3, 1)
    assert torch.allclose(splits.test.tensors["label"].view(-1), torch.tensor(raw["test"]["labels"].reshape(-1), dtype=torch.float32))
    assert splits.train.tensors["audio"][0, 0, 0] == 0  # -inf set to 0, as MulT's loader does
    assert torch.isfinite(splits.train.tensors["audio"]).all()
    assert splits.test.tensors[UID].tolist() == [9, 10, 11, 12]


def test_load_mosi_names_what_is_wrong(tmp_path, monkeypatch):
    monkeypatch.setenv("MMREPRO_DATA_DIR", str(tmp_path))
    with pytest.raises(DataError, match="mosei_senti_data.pkl"):
        load_mosi("mosei")
    with pytest.raises(ValueError, match="mosi, mosei"):
        load_mosi("iemocap")
    (tmp_path / "bad.pkl").write_bytes(pickle.dumps({"train": {}, "valid": {}, "test": {}}))
    with pytest.raises(DataError, match="lacks"):
        load_mosi("mosi", path=tmp_path / "bad.pkl")


def test_sentiment_metrics_follow_the_community_definitions():
    labels = np.array([-2.6, -0.4, 0.0, 0.6, 2.2, 3.0])
    preds = np.array([-3.4, 0.2, -0.2, 0.4, 1.4, 2.4])
    m = sentiment_metrics(preds, labels)
    assert m["mae"] == pytest.approx(np.mean(np.abs(preds - labels)))
    assert m["corr"] == pytest.approx(np.corrcoef(preds, labels)[0, 1])
    # Acc-7: round(clip(p, -3, 3)) == round(clip(y, -3, 3)): -3/-3, 0/-0, -0/0, 0/1, 1/2, 2/3 -> 3 of 6
    assert m["acc7"] == pytest.approx(3 / 6)
    # has-0: >= 0 vs < 0 over all: wrong on -0.4 (pred 0.2) and 0.0 (pred -0.2) -> 4 of 6
    assert m["acc2_has0"] == pytest.approx(4 / 6)
    # non-0: the zero label is dropped, wrong only on -0.4 -> 4 of 5
    assert m["acc2_non0"] == pytest.approx(4 / 5)
    with pytest.raises(ValueError, match="predictions"):
        sentiment_metrics(preds[:3], labels)
