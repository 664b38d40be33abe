"""Corruptions on the batch dict: ranges, per-sample levels, coverage, density, identities, missing modality."""

from __future__ import annotations

import pytest
import torch

from mmrepro.data.corruptions import (KINDS, Blur, GaussianNoise, GradedNoise, MissingModality, Occlusion, SaltPepper,
                                      compose, make_corruption)
from mmrepro.data.shortcut_prompts import TokenMask, TokenReplace


def _batch(b: int = 4, value: float | None = None) -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(0)
    image = torch.full((b, 1, 28, 28), value) if value is not None else torch.rand(b, 1, 28, 28, generator=gen)
    return {"image": image, "audio": torch.randn(b, 1, 8, 8, generator=gen), "label": torch.arange(b)}


def test_gaussian_noise_is_clipped_to_the_valid_range_and_leaves_others_alone():
    torch.manual_seed(0)
    batch = _batch()
    out = GaussianNoise("image", std=5.0, valid_range=(0.0, 1.0))(batch)
    assert out["image"].min() >= 0 and out["image"].max() <= 1
    assert not torch.equal(out["image"], batch["image"])
    assert out["audio"] is batch["audio"] and out["label"] is batch["label"]
    unclipped = GaussianNoise("image", std=5.0)(batch)["image"]
    assert unclipped.min() < 0 and unclipped.max() > 1


def test_gaussian_noise_per_sample_std():
    torch.manual_seed(0)
    batch = _batch()
    std = torch.tensor([0.0, 1.0, 0.0, 3.0])
    diff = GaussianNoise("audio", std=std)(batch)["audio"] - batch["audio"]
    per_sample = diff.flatten(1).std(1)
    assert per_sample[0] == 0 and per_sample[2] == 0
    assert 0.7 < per_sample[1] < 1.3 and 2.2 < per_sample[3] < 3.8
    with pytest.raises(ValueError, match=r"shape \(4,\)"):
        GaussianNoise("audio", std=torch.ones(3))(batch)


@pytest.mark.parametrize("fraction", [0.25, 0.5])
def test_occlusion_covers_the_right_fraction_in_one_square(fraction):
    torch.manual_seed(0)
    out = Occlusion("image", fraction=fraction, fill=0.0)(_batch(value=1.0))["image"]
    side = round(fraction * 28)
    for sample in out[:, 0]:
        hidden = (sample == 0).nonzero()
        assert len(hidden) == side * side
        rows, cols = hidden[:, 0], hidden[:, 1]
        assert rows.max() - rows.min() + 1 == side and cols.max() - cols.min() + 1 == side


def test_occlusion_extremes_and_errors():
    batch = _batch(value=1.0)
    assert torch.equal(Occlusion("image", fraction=0.0)(batch)["image"], batch["image"])
    assert (Occlusion("image", fraction=1.0, fill=0.5)(batch)["image"] == 0.5).all()
    with pytest.raises(ValueError, match="1.5"):
        Occlusion("image", fraction=1.5)(batch)


def test_salt_pepper_density():
    torch.manual_seed(0)
    x = _batch(b=16, value=0.5)
    out = SaltPepper("image", density=0.2, valid_range=(0.0, 1.0))(x)["image"]
    low, high = (out == 0).float().mean().item(), (out == 1).float().mean().item()
    assert abs(low - 0.1) < 0.01 and abs(high - 0.1) < 0.01
    assert ((out == 0) | (out == 1) | (out == 0.5)).all()
    assert torch.equal(SaltPepper("image", density=0.0)(x)["image"], x["image"])
    with pytest.raises(ValueError, match="density"):
        SaltPepper("image", density=2.0)(x)


def test_salt_pepper_without_range_uses_each_sample_extremes():
    torch.manual_seed(0)
    batch = _batch()
    out = SaltPepper("audio", density=0.5)(batch)["audio"]
    assert torch.equal(out.flatten(1).amax(1), batch["audio"].flatten(1).amax(1))
    assert torch.equal(out.flatten(1).amin(1), batch["audio"].flatten(1).amin(1))


def test_blur_sigma_zero_is_identity_and_blur_smooths():
    batch = _batch()
    assert Blur("image", sigma=0.0)(batch)["image"] is batch["image"]
    blurred = Blur("image", sigma=1.5)(batch)["image"]
    assert blurred.shape == batch["image"].shape
    assert blurred.var() < 0.5 * batch["image"].var()
    const = _batch(value=0.3)
    assert torch.allclose(Blur("image", sigma=2.0)(const)["image"], const["image"], atol=1e-6)


def test_missing_modality_zero_and_drop():
    batch = _batch()
    zeroed = MissingModality("audio", mode="zero")(batch)
    assert (zeroed["audio"] == 0).all() and zeroed["audio"].shape == batch["audio"].shape
    dropped = MissingModality("audio", mode="drop")(batch)
    assert set(dropped) == {"image", "label"}
    assert "audio" in batch, "the input batch must not be modified"
    with pytest.raises(ValueError, match="'zero', 'drop'"):
        MissingModality("audio", mode="mask")(batch)
    with pytest.raises(KeyError, match="video"):
        MissingModality("video")(batch)
    with pytest.raises(KeyError, match="video"):
        GaussianNoise("video", std=1.0)(batch)


def test_make_corruption_and_compose():
    expected = {"gaussian": GaussianNoise, "blur": Blur, "occlusion": Occlusion, "salt_pepper": SaltPepper,
                "missing": MissingModality, "token_mask": TokenMask, "token_replace": TokenReplace}
    assert set(expected) == set(KINDS)
    for kind, cls in expected.items():
        assert isinstance(make_corruption(kind, "image", 0.3, (0.0, 1.0)), cls)
    with pytest.raises(ValueError) as err:
        make_corruption("rain", "image", 1.0)
    assert "rain" in str(err.value) and all(k in str(err.value) for k in KINDS)
    torch.manual_seed(0)
    both = compose([MissingModality("audio"), Occlusion("image", fraction=1.0, fill=0.25)])(_batch())
    assert (both["audio"] == 0).all() and (both["image"] == 0.25).all()


def test_fixed_noise_is_seeded_clipped_and_touches_one_modality():
    from mmrepro.data import DictDataset
    from mmrepro.data.corruptions import fixed_noise

    ds = DictDataset({"image": torch.full((6, 1, 4, 4), 0.5), "audio": torch.zeros(6, 3), "label": torch.arange(6)},
                     ("image", "audio"))
    a, b = fixed_noise(ds, "image", 2.0, (0.0, 1.0), seed=3), fixed_noise(ds, "image", 2.0, (0.0, 1.0), seed=3)
    assert torch.equal(a.tensors["image"], b.tensors["image"]), "the same seed gives the same perturbation"
    assert a.tensors["image"].min() >= 0 and a.tensors["image"].max() <= 1 and a.tensors["image"].std() > 0
    assert torch.equal(a.tensors["audio"], ds.tensors["audio"])
    assert torch.equal(ds.tensors["image"], torch.full((6, 1, 4, 4), 0.5)), "the input dataset is left alone"
    assert not torch.equal(fixed_noise(ds, "image", 2.0, (0.0, 1.0), seed=4).tensors["image"], a.tensors["image"])


def test_make_corruption_knows_the_token_kinds():
    from mmrepro.data.shortcut_prompts import MASK, PAD

    ids = torch.tensor([[1, 4, 20, 30, 5, PAD, PAD]] * 64)
    torch.manual_seed(0)
    masked = make_corruption("token_mask", "text", 0.5)({"text": ids})["text"]
    assert torch.equal(masked[:, -2:], ids[:, -2:]), "padding stays padding"
    assert 0.3 < (masked[:, :5] == MASK).float().mean() < 0.7


def test_noise_levels_are_ordered_and_clipped():
    noise = GradedNoise({"img": 1.0, "aud": 2.0}, {"img": 2.0}, {"img": (0.0, 1.0), "aud": None})
    stds = [noise.std("img", k).item() for k in range(1, 12)]
    assert stds[0] == 0 and all(a < b for a, b in zip(stds, stds[1:])) and stds[-1] == pytest.approx(1.0)
    assert noise.std("aud", 6).item() == pytest.approx(1.0)  # linear: halfway between levels 1 and 11
    torch.manual_seed(0)
    batch = {"img": torch.rand(64, 1, 8, 8), "aud": torch.randn(64, 4)}
    spread = []
    for k in (1, 4, 8, 11):
        noisy = noise.at_level(k)(batch)
        assert noisy["img"].min() >= 0 and noisy["img"].max() <= 1
        spread.append((noisy["aud"] - batch["aud"]).std().item())
    assert torch.equal(noise.at_level(1)(batch)["img"], batch["img"])  # level 1 is clean
    assert spread[0] == 0 and spread[1] < spread[2]


def test_noise_rejects_bad_levels_and_samples_clean_half():
    noise = GradedNoise({"a": 1.0})
    with pytest.raises(ValueError, match="levels must lie in"):
        noise.std("a", 12)
    torch.manual_seed(0)
    levels = noise.sample_levels(4000, torch.device("cpu"))["a"]
    assert levels.min() == 1 and levels.max() == 11
    assert 0.5 < (levels == 1).float().mean() < 0.6  # 1/2 forced clean + 1/22 drawn clean
