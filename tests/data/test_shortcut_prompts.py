"""The shortcut-prompt data: prompts with hints and fillers, token corruptions that keep padding, the loader."""

from __future__ import annotations

import pytest
import torch

from mmrepro.data.core import DictDataset, Splits
from mmrepro.data.shortcut_prompts import EOS, MASK, PAD, TokenMask, TokenReplace, make_prompts


def test_prompts_have_hints_fillers_and_padding():
    g = torch.Generator().manual_seed(0)
    labels = torch.arange(10).repeat(50)
    prompts = make_prompts(labels, None, 1.0, g)
    assert torch.equal(prompts[:, 2] - 16, labels)
    assert (prompts == PAD).any() and ((prompts == EOS).sum(1) == 1).all()
    assert (make_prompts(labels, None, 0.0, g)[:, 2] - 16 == labels).float().mean() < 0.3


def test_text_corruptions_keep_padding():
    ids = torch.tensor([[2, 4, 20, 5, 0, 0]] * 3)
    masked = TokenMask(rate=1.0)({"text": ids})["text"]
    assert torch.equal(masked == MASK, ids != PAD) and torch.equal(masked == PAD, ids == PAD)
    replaced = TokenReplace(rate=1.0)({"text": ids})["text"]
    assert torch.equal(replaced == PAD, ids == PAD)


def test_load_shortcut_builds_labels_prompts_and_randomised_test(monkeypatch):
    from mmrepro.data import shortcut_prompts as shortcut

    g = torch.Generator().manual_seed(0)
    n = 200
    ds = DictDataset({"image": torch.rand(n, 1, 28, 28, generator=g), "audio": torch.zeros(n, 1, 4, 4),
                      "label": torch.arange(n) % 10}, ("audio", "image"))
    monkeypatch.setattr(shortcut, "load_av_digits", lambda **kw: Splits("av_digits", ds, ds, ds, 10))
    splits = shortcut.load_shortcut(shortcut_rate=1.0, task="add", repeats=2)
    text, label, digit = (splits.train.tensors[k] for k in ("text", "label", "_digit"))
    assert len(splits.train) == 2 * n and splits.modalities == ("image", "text")
    assert torch.equal(label, (digit + text[:, 2] - shortcut.OPERANDS) % 10)
    assert torch.equal(text[:, 4] - shortcut.HINTS, label)
    randomised = splits.info["test_randomised"]
    assert torch.equal(randomised.tensors["text"][:, 2], splits.test.tensors["text"][:, 2])
    assert (randomised.tensors["text"][:, 4] - shortcut.HINTS == randomised.tensors["label"]).float().mean() < 0.3
    with pytest.raises(ValueError, match="task"):
        shortcut.load_shortcut(task="multiply")
