"""The paired-image folder loader on fixture files written here."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from mmrepro.data.download import DataError
from mmrepro.data.paired_images import load_paired_folder


def _write_fixture(root, n: int = 6) -> None:
    rng = np.random.default_rng(0)
    (root / "rgb").mkdir(parents=True)
    (root / "depth").mkdir()
    for i in range(n):
        Image.fromarray(rng.integers(0, 256, (20, 24, 3), dtype=np.uint8)).save(root / "rgb" / f"{i:03d}.png")
        Image.fromarray((np.full((20, 24), 1000 * i, dtype=np.uint16))).save(root / "depth" / f"{i:03d}.png")
    (root / "train.txt").write_text("".join(f"{i:03d}.png {i % 2}\n" for i in range(4)))
    (root / "val.txt").write_text("004.png 0\n")
    (root / "test.txt").write_text("005.png 1\n")


def test_loads_paired_folder(tmp_path):
    _write_fixture(tmp_path / "surf")
    splits = load_paired_folder(tmp_path / "surf", size=16)
    assert splits.modalities == ("depth", "rgb")
    assert splits.input_shapes() == {"depth": (1, 16, 16), "rgb": (3, 16, 16)}
    assert len(splits.train) == 4 and len(splits.val) == 1 and splits.num_classes == 2
    assert torch.equal(splits.train.tensors["label"], torch.tensor([0, 1, 0, 1]))
    depth = splits.train.tensors["depth"]
    expected = (3000 * 255 / 65535 - 127.5) / 128  # 16-bit depth mapped to 0-255, then the code's scaling
    assert torch.allclose(depth[3], torch.full_like(depth[3], expected), atol=1e-4)
    assert splits.train.tensors["rgb"].min() >= -1 and splits.train.tensors["rgb"].max() <= 1


def test_clear_errors(tmp_path):
    _write_fixture(tmp_path / "surf")
    with pytest.raises(DataError, match="no subfolder"):
        load_paired_folder(tmp_path / "surf", modalities=["rgb", "ir"])
    (tmp_path / "surf" / "depth" / "005.png").unlink()
    with pytest.raises(DataError, match="005.png is missing"):
        load_paired_folder(tmp_path / "surf")
    (tmp_path / "surf" / "val.txt").write_text("004.png zero\n")
    with pytest.raises(DataError, match="integer label"):
        load_paired_folder(tmp_path / "surf")


def test_digit_depth_views_official_range_and_frm_ordering():
    from conftest import RAW_DATA_ROOT

    if RAW_DATA_ROOT is None:
        pytest.skip("MNIST raw files not found: set MMREPRO_DATA_DIR (tests never download)")
    from mmrepro.data.paired_images import make_digit_depth
    from mmrepro.methods.mwam import frm

    splits = make_digit_depth(sizes=(40, 8, 8))
    assert splits.input_shapes() == {"rgb": (3, 32, 32), "depth": (1, 32, 32)}
    for m in ("rgb", "depth"):  # 8-bit values mapped by the official (x - 127.5) / 128
        x = splits.train.tensors[m]
        assert x.min() >= -127.5 / 128 and x.max() <= 127.5 / 128
        assert torch.allclose(x * 128 + 127.5, (x * 128 + 127.5).round(), atol=1e-3)
    assert frm(splits.train.tensors["depth"], reduce="mean") > 10 * frm(splits.train.tensors["rgb"], reduce="mean")
    unit = make_digit_depth(sizes=(40, 8, 8), scale="unit")
    assert torch.allclose(unit.train.tensors["depth"] * 255, (splits.train.tensors["depth"] * 128 + 127.5), atol=1e-3)
    with pytest.raises(ValueError, match="side"):
        make_digit_depth(sizes=(4, 4, 4), side=30)
    with pytest.raises(ValueError, match="scale"):
        make_digit_depth(sizes=(4, 4, 4), scale="zscore")


def test_mismatch_draws_other_rows_at_the_given_rate():
    from mmrepro.data.paired_images import _mismatched

    gen = torch.Generator().manual_seed(0)
    assert torch.equal(_mismatched(50, 0.0, gen), torch.arange(50))
    source = _mismatched(4000, 0.5, gen)
    moved = (source != torch.arange(4000)).float().mean()
    assert 0.45 < moved < 0.52  # half redrawn; a redraw lands on itself 1 time in 4000
    with pytest.raises(ValueError, match="rgb_mismatch"):
        from mmrepro.data.paired_images import make_digit_depth
        make_digit_depth(sizes=(4, 4, 4), rgb_mismatch=1.5)


def test_digit_depth_ir_view_is_a_third_spectrum_and_leaves_the_others_unchanged():
    from conftest import RAW_DATA_ROOT

    if RAW_DATA_ROOT is None:
        pytest.skip("MNIST raw files not found: set MMREPRO_DATA_DIR (tests never download)")
    from mmrepro.data.paired_images import make_digit_depth
    from mmrepro.methods.mwam import frm

    two = make_digit_depth(sizes=(64, 8, 8), rgb_noise=0.1)
    three = make_digit_depth(sizes=(64, 8, 8), rgb_noise=0.1, ir=True)
    assert three.modalities == ("rgb", "depth", "ir") and three.input_shapes()["ir"] == (1, 32, 32)
    for m in ("rgb", "depth"):  # drawn last: the two views of the two-view data are untouched
        assert torch.equal(two.train.tensors[m], three.train.tensors[m])
    ir = three.train.tensors["ir"]
    assert ir.min() >= -127.5 / 128 and ir.max() <= 127.5 / 128 and three.valid_range["ir"] == three.valid_range["rgb"]
    f = {m: frm(three.train.tensors[m], reduce="mean") for m in three.modalities}
    assert f["rgb"] < f["ir"] < f["depth"]  # the order of the paper's Table 1 (RGB < IR < Depth)
    assert three.info["ir_mismatch"] == 0.0 and "ir_mismatch" not in two.info
    shuffled = make_digit_depth(sizes=(64, 8, 8), rgb_noise=0.1, ir=True, ir_mismatch=1.0)
    assert not torch.equal(shuffled.train.tensors["ir"], ir)
    for bad, match in (({"ir_mismatch": -0.1}, "ir_mismatch"), ({"ir_noise": -1.0}, "ir_noise"),
                       ({"ir_blur": 0.0}, "ir_blur")):
        with pytest.raises(ValueError, match=match):
            make_digit_depth(sizes=(4, 4, 4), ir=True, **bad)
