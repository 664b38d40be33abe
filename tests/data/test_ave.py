"""The AVE loader on fixture files in the community layout (folders and pickles), and missing files."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
from PIL import Image

from mmrepro.data.ave import load_ave
from mmrepro.data.download import DataError


# ---- AVE loader on fixture files ----
def _write_ave(root, per_split=2, pickled=False):
    cats = ["Church bell", "Dog barking"]
    for i, split in enumerate(["trainSet.txt", "valSet.txt", "testSet.txt"]):
        lines = ["Category&VideoID&Quality&StartTime&EndTime"]
        for j in range(per_split):
            vid = f"vid{i}{j}"
            lines.append(f"{cats[j % 2]}&{vid}&good&0&10")
            spec = np.full((6, 5 + j), float(j), dtype=np.float32)
            (root / "audio_spec").mkdir(parents=True, exist_ok=True)
            if pickled:
                with (root / "audio_spec" / f"{vid}.pkl").open("wb") as handle:
                    pickle.dump(spec, handle)
            else:
                np.save(root / "audio_spec" / f"{vid}.npy", spec)
            frames = root / "visual" / vid
            frames.mkdir(parents=True, exist_ok=True)
            for k in range(3):
                Image.fromarray(np.full((12, 16, 3), 40 * k, dtype=np.uint8)).save(frames / f"{k:04d}.jpg")
        (root / split).write_text("\n".join(lines) + "\n")


@pytest.mark.parametrize("pickled", [False, True])
def test_ave_loader_reads_the_community_layout(tmp_path, pickled):
    _write_ave(tmp_path, pickled=pickled)
    s = load_ave(tmp_path, num_frames=2, image_size=8, audio_frames=6)
    assert s.num_classes == 2 and s.info["classes"] == ["Church bell", "Dog barking"]
    assert s.input_shapes() == {"audio": (1, 6, 6), "visual": (6, 8, 8)}
    assert s.train.tensors["label"].tolist() == [0, 1]
    assert s.train.tensors["audio"][1, 0, :, 5].abs().sum() > 0 and s.train.tensors["audio"][0, 0, :, 5].sum() == 0
    assert 0 <= s.train.tensors["visual"].min() and s.train.tensors["visual"].max() <= 1


def test_ave_loader_names_missing_files(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        load_ave(tmp_path / "nowhere")
    _write_ave(tmp_path)
    (tmp_path / "audio_spec" / "vid10.npy").unlink()
    with pytest.raises(DataError, match="vid10"):
        load_ave(tmp_path, image_size=8, audio_frames=6)
