"""The IIBalance chapter's baselines (PMR, MMPareto, G-Blending) and the AVE loader, on toy tensors and fixture files."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch
from PIL import Image

from mmrepro.data import make_synthetic
from mmrepro.data.ave import load_ave
from mmrepro.data.download import DataError
from mmrepro.methods.gblending import GBlending, blending_weights
from mmrepro.methods.mmpareto import MMPareto, pareto_weight
from mmrepro.methods.pmr import PMR, class_means, distance_logits, pce_weights
from mmrepro.models.multimodal import build_model
from mmrepro.train import TrainConfig, fit

CFG = TrainConfig(epochs=3, batch_size=32, lr=3e-3, progress=False)


@pytest.fixture(scope="module")
def toy():
    return make_synthetic(levels=(3.0, 1.0), dim=8, num_classes=4, sizes=(256, 96, 64), seed=0)


# ---- PMR ----
def test_pmr_prototypes_and_forced_weights():
    feats = torch.tensor([[0.0, 0.0], [2.0, 0.0], [10.0, 10.0]])
    means = class_means(feats, torch.tensor([0, 0, 2]), 3)
    assert torch.allclose(means, torch.tensor([[1.0, 0.0], [0.0, 0.0], [10.0, 10.0]]))
    assert distance_logits(torch.tensor([[1.0, 0.0]]), means).argmax() == 0
    scores = torch.tensor([8.0, 2.0, 8.0])
    assert pce_weights(scores, alpha=0.5).tolist() == [0.0, 0.5, 0.0]  # only the weaker modality, towards ratio 1
    assert pce_weights(scores, alpha=0.5, scaled=True).tolist() == [0.0, 1.5, 0.0]


def test_pmr_fits_and_fires_on_the_weak_modality(toy):
    torch.manual_seed(0)
    result = fit(PMR(build_model(toy, "mlp", "sum")), toy, CFG)
    assert result.history["train_fired_m1"].mean() > result.history["train_fired_m0"].mean()


# ---- MMPareto ----
def test_pareto_weight_averages_without_conflict_and_finds_min_norm_with_conflict():
    a, conflict = pareto_weight(torch.tensor([1.0, 0.0]), torch.tensor([1.0, 1.0]))
    assert not conflict and a == 0.5
    g1, g2 = torch.tensor([1.0, 0.0]), torch.tensor([-0.5, 1.0])
    a, conflict = pareto_weight(g1, g2)
    d = a * g1 + (1 - a) * g2
    assert conflict and d @ g1 >= -1e-6 and d @ g2 >= -1e-6  # the min-norm point decreases both losses
    grid = torch.linspace(0, 1, 101)
    assert d.norm() <= min((t * g1 + (1 - t) * g2).norm() for t in grid) + 1e-4


def test_mmpareto_fits(toy):
    torch.manual_seed(0)
    result = fit(MMPareto(build_model(toy, "mlp", "sum")), toy, CFG)
    assert {"train_conflict_m0", "train_loss_m1"} <= set(result.history.columns)
    assert result.best_score > 0.4


# ---- G-Blending ----
def test_blending_weights_prefer_heads_that_generalise_without_overfitting():
    w = blending_weights(torch.tensor([0.5, 0.5, -0.1]), torch.tensor([0.1, 0.5, 0.1]))
    assert w.sum() == pytest.approx(1.0) and w[0] > w[1] > w[2] == 0
    assert torch.allclose(blending_weights(torch.tensor([-1.0, -1.0]), torch.ones(2)), torch.tensor([0.5, 0.5]))


def test_gblending_updates_its_weights(toy):
    torch.manual_seed(0)
    method = GBlending(build_model(toy, "mlp", "sum"))
    result = fit(method, toy, CFG)
    assert method.blend.sum().item() == pytest.approx(1.0, abs=1e-5)
    assert result.history["train_blend_fused"].nunique() > 1
    with pytest.raises(ValueError, match="super_epoch"):
        GBlending(build_model(toy, "mlp", "sum"), super_epoch=0)


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
