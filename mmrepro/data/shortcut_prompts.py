"""The shortcut-prompt task on AV-Digits images, and the spoken-frames setting (MoIR chapter).

Shortcut prompt: every AV-Digits image comes with a short prompt of token ids
``[BOS, (ADD, n), HINT, h, filler..., EOS, PAD...]``.  The label is the
image's digit (``task="identify"``) or ``(digit + n) mod 10`` (``task="add"``,
so both modalities are needed).  The hint ``h`` equals the label with
probability ``shortcut_rate`` and is uniform otherwise, so the text stream
dominates by construction; ``splits.test`` keeps the training rate, while
``splits.info["test_randomised"]`` holds the same test images with a
uniform hint (the shortcut is useless there).  The number of filler words
varies, so prompts have real padding.

Spoken frames: the AV-Digits image and audio as they are; the model reads
the spectrogram as a sequence of frame tokens.

``_digit`` keeps the image's digit (the label differs from it in the add task).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from .av_digits import load_av_digits
from .core import LABEL, Batch, DictDataset, Splits

PAD, MASK, BOS, ADD, HINT, EOS = range(6)
OPERANDS = 6  # ids 6..15: the operand n
HINTS = 16  # ids 16..25: the hint h
FILLERS = 26  # ids 26..33: filler words
VOCAB_SIZE = 34
MAX_FILLERS = 3
TASKS = ("identify", "add")


def make_prompts(labels: Tensor, operands: Tensor | None, shortcut_rate: float, generator: torch.Generator) -> Tensor:
    """Prompt ids (N, L): an optional operand, a hint right with probability ``shortcut_rate``, fillers, padding."""
    if not 0 <= shortcut_rate <= 1:
        raise ValueError(f"shortcut_rate must lie in [0, 1], got {shortcut_rate}")
    n = len(labels)
    right = torch.rand(n, generator=generator) < shortcut_rate
    hint = torch.where(right, labels, torch.randint(10, (n,), generator=generator))
    head = [torch.full((n,), BOS)]
    if operands is not None:
        head += [torch.full((n,), ADD), OPERANDS + operands]
    head += [torch.full((n,), HINT), HINTS + hint]
    fixed = torch.stack(head, 1)
    n_fill = torch.randint(MAX_FILLERS + 1, (n,), generator=generator)
    slots = torch.arange(MAX_FILLERS + 1).unsqueeze(0)
    filler = FILLERS + torch.randint(VOCAB_SIZE - FILLERS, (n, MAX_FILLERS + 1), generator=generator)
    tail = torch.where(slots < n_fill.unsqueeze(1), filler, torch.where(slots == n_fill.unsqueeze(1), EOS, PAD))
    return torch.cat([fixed, tail], 1)


def _with_prompts(ds: DictDataset, task: str, shortcut_rate: float, repeats: int, gen: torch.Generator) -> DictDataset:
    ds = ds.subset(torch.arange(len(ds)).repeat(repeats))
    digits = ds.tensors[LABEL]
    operands = torch.randint(10, (len(ds),), generator=gen) if task == "add" else None
    labels = digits if operands is None else (digits + operands) % 10
    text = make_prompts(labels, operands, shortcut_rate, gen)
    return DictDataset({**ds.tensors, "text": text, LABEL: labels, "_digit": digits}, ("image", "text"))


def load_shortcut(shortcut_rate: float = 0.9, task: str = "identify", repeats: int = 1, seed: int = 0,
                  **av_overrides) -> Splits:
    """AV-Digits images with shortcut prompts; ``repeats`` pairs each training image with that many prompts."""
    if task not in TASKS:
        raise ValueError(f"unknown task {task!r}; valid: {', '.join(TASKS)}")
    if repeats < 1:
        raise ValueError(f"repeats must be >= 1, got {repeats}")
    base = load_av_digits(**av_overrides).select(["image"])
    gen = torch.Generator().manual_seed(seed)
    train = _with_prompts(base.train, task, shortcut_rate, repeats, gen)
    val = _with_prompts(base.val, task, shortcut_rate, 1, gen)
    test = _with_prompts(base.test, task, shortcut_rate, 1, gen)
    randomised = test.with_tensors(text=make_prompts(test.tensors[LABEL], _operands(test), 0.0, gen))
    info = {**base.info, "vocab_size": VOCAB_SIZE, "pad_id": PAD, "task": task, "shortcut_rate": shortcut_rate,
            "test_randomised": randomised}
    return Splits("av_digits_shortcut", train, val, test, 10, valid_range={"image": (0.0, 1.0), "text": None}, info=info)


def _operands(ds: DictDataset) -> Tensor | None:
    """The operand n recovered from the prompts (None for the identify task)."""
    text = ds.tensors["text"]
    return text[:, 2] - OPERANDS if bool((text[:, 1] == ADD).all()) else None


def load_spoken_frames(**av_overrides) -> Splits:
    """The second setting: AV-Digits image and spectrogram (read as frame tokens by the model)."""
    return load_av_digits(**av_overrides)


@dataclass
class TokenMask:
    """Replace a fraction ``rate`` of a prompt's valid tokens by MASK (padding stays padding)."""

    modality: str = "text"
    rate: float = 0.25

    def __call__(self, batch: Batch) -> Batch:
        return {**batch, self.modality: _corrupt(batch[self.modality], self.rate, torch.full_like(batch[self.modality], MASK))}


@dataclass
class TokenReplace:
    """Replace a fraction ``rate`` of a prompt's valid tokens by random non-special tokens."""

    modality: str = "text"
    rate: float = 0.25

    def __call__(self, batch: Batch) -> Batch:
        ids = batch[self.modality]
        random_ids = torch.randint(OPERANDS, VOCAB_SIZE, ids.shape, device=ids.device)
        return {**batch, self.modality: _corrupt(ids, self.rate, random_ids)}


def _corrupt(ids: Tensor, rate: float, replacement: Tensor) -> Tensor:
    if not 0 <= rate <= 1:
        raise ValueError(f"token corruption rate must lie in [0, 1], got {rate}")
    hit = (torch.rand(ids.shape, device=ids.device) < rate) & (ids != PAD)
    return torch.where(hit, replacement, ids)


TEXT_CORRUPTIONS = {"mask": TokenMask, "replace": TokenReplace}


def make_text_corruption(kind: str, level: float, modality: str = "text") -> TokenMask | TokenReplace:
    """A prompt corruption by name: ``"mask"`` or ``"replace"`` at rate ``level``."""
    if kind not in TEXT_CORRUPTIONS:
        raise ValueError(f"unknown text corruption {kind!r}; valid: {', '.join(TEXT_CORRUPTIONS)}")
    return TEXT_CORRUPTIONS[kind](modality, level)
