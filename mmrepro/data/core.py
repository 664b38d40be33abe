"""The batch dict, the in-memory dataset that yields it, and the split bundle.

A batch is a plain ``dict`` keyed by modality name plus ``"label"``, so any
number of modalities flows through the same code.  Every other tensor is
metadata (a speaker id, a row id, a mask) and its key starts with ``_``, so a
model can tell modalities from metadata in any batch.  Datasets here are small
enough to live in memory; batches are sliced in one indexing call per batch
(``batch``), which is far faster than collating item by item.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Callable, Iterator, Literal, Mapping, Sequence

import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, DistributedSampler

Batch = dict[str, Tensor]
Transform = Callable[[Batch], Batch]
LABEL = "label"
META_PREFIX = "_"
UID = "_uid"  # a row id unique across train, val and test (per-example state such as BTW's weights)
Task = Literal["classification", "regression"]


def is_meta(key: str) -> bool:
    """Whether a batch key holds metadata (``_speaker``, ``_uid``, ...) rather than a modality or the label."""
    return key.startswith(META_PREFIX)


def is_modality(key: str) -> bool:
    """Whether a batch key names a modality: neither the label nor metadata."""
    return key != LABEL and not is_meta(key)


class DictDataset(Dataset):
    """Aligned tensors keyed by modality name, plus ``label`` and metadata keys starting with ``_``."""

    def __init__(self, tensors: Mapping[str, Tensor], modalities: Sequence[str]):
        if LABEL not in tensors:
            raise KeyError(f"DictDataset needs a '{LABEL}' tensor; got keys {sorted(tensors)}")
        missing = [m for m in modalities if m not in tensors]
        if missing:
            raise KeyError(f"modalities {missing} have no tensor; available keys: {sorted(tensors)}")
        stray = [k for k in tensors if is_modality(k) and k not in modalities]
        if stray:
            raise KeyError(f"tensors {stray} are neither modalities {list(modalities)} nor '{LABEL}'; "
                           f"name metadata with a leading '{META_PREFIX}' (e.g. '_{stray[0]}')")
        lengths = {k: len(v) for k, v in tensors.items()}
        if len(set(lengths.values())) != 1:
            raise ValueError(f"all tensors must have the same length, got {lengths}")
        self.tensors: dict[str, Tensor] = dict(tensors)
        self.modalities: tuple[str, ...] = tuple(modalities)

    def __len__(self) -> int:
        return len(self.tensors[LABEL])

    def __getitem__(self, index: int) -> Batch:
        return {k: v[index] for k, v in self.tensors.items()}

    def batch(self, indices: Tensor | Sequence[int] | range) -> Batch:
        """The rows ``indices`` as one batch dict, sliced in one indexing call per tensor."""
        idx = torch.as_tensor(indices, dtype=torch.long)
        return {k: v.index_select(0, idx) for k, v in self.tensors.items()}

    __getitems__ = batch  # the DataLoader's batched fetch

    @property
    def meta(self) -> tuple[str, ...]:
        """The metadata keys (leading ``_``): carried along with every row, never fed to a model."""
        return tuple(k for k in self.tensors if is_meta(k))

    def subset(self, indices: Tensor | Sequence[int]) -> "DictDataset":
        """A new dataset holding the given rows (copies, so it can be modified freely)."""
        return DictDataset(self.batch(indices), self.modalities)

    def with_tensors(self, **extra: Tensor) -> "DictDataset":
        """A dataset with extra or replaced tensors; a new key is a new modality unless it starts with ``_``."""
        added = tuple(k for k in extra if is_modality(k) and k not in self.modalities)
        return DictDataset({**self.tensors, **extra}, self.modalities + added)

    def select(self, modalities: Sequence[str]) -> "DictDataset":
        """The same rows restricted to some modalities (in the given order)."""
        unknown = [m for m in modalities if m not in self.modalities]
        if unknown:
            raise KeyError(f"unknown modalities {unknown}; this dataset has {list(self.modalities)}")
        keep = {k: v for k, v in self.tensors.items() if k not in self.modalities or k in modalities}
        return DictDataset(keep, tuple(modalities))


def split_rows(tensors: Mapping[str, Tensor], modalities: Sequence[str],
               sizes: tuple[int, int, int]) -> tuple[DictDataset, DictDataset, DictDataset]:
    """Train, validation and test datasets from consecutive blocks of ``sizes`` rows."""
    if sum(sizes) != len(tensors[LABEL]):
        raise ValueError(f"split sizes {sizes} sum to {sum(sizes)}, but there are {len(tensors[LABEL])} rows")
    full = DictDataset(tensors, modalities)
    bounds = [0, sizes[0], sizes[0] + sizes[1], sum(sizes)]
    train, val, test = (full.subset(torch.arange(bounds[i], bounds[i + 1])) for i in range(3))
    return train, val, test


def _identity(batch: Batch) -> Batch:
    return batch


@dataclass
class Splits:
    """Train / validation / test datasets plus what a model needs to know about them."""

    name: str
    train: DictDataset
    val: DictDataset
    test: DictDataset
    num_classes: int
    task: Task = "classification"
    #: the range a modality's values must stay in after a corruption (None: unbounded)
    valid_range: dict[str, tuple[float, float] | None] = field(default_factory=dict)
    info: dict = field(default_factory=dict)

    @property
    def modalities(self) -> tuple[str, ...]:
        return self.train.modalities

    def input_shapes(self) -> dict[str, tuple[int, ...]]:
        """Per-modality shape of one example, without the batch dimension."""
        return {m: tuple(self.train.tensors[m].shape[1:]) for m in self.modalities}

    def split(self, name: str) -> DictDataset:
        if name not in ("train", "val", "test"):
            raise ValueError(f"unknown split {name!r}; valid: 'train', 'val', 'test'")
        return getattr(self, name)

    def subsample_train(self, n: int, seed: int = 0) -> "Splits":
        """The same splits with a random subset of ``n`` training examples (for quick runs)."""
        if not 0 < n <= len(self.train):
            raise ValueError(f"n must be in 1..{len(self.train)} (the training size), got {n}")
        keep = torch.randperm(len(self.train), generator=torch.Generator().manual_seed(seed))[:n].sort().values
        return replace(self, train=self.train.subset(keep))

    def with_uids(self) -> "Splits":
        """The same splits with a ``_uid`` row id, unique across train, val and test."""
        starts = [0, len(self.train), len(self.train) + len(self.val)]
        parts = [d.with_tensors(**{UID: torch.arange(s, s + len(d))})
                 for d, s in zip((self.train, self.val, self.test), starts)]
        return replace(self, train=parts[0], val=parts[1], test=parts[2])

    def select(self, modalities: Sequence[str]) -> "Splits":
        """The same splits restricted to some modalities."""
        return Splits(
            self.name, self.train.select(modalities), self.val.select(modalities), self.test.select(modalities),
            self.num_classes, self.task, {m: self.valid_range.get(m) for m in modalities}, dict(self.info),
        )


def train_loader(
    dataset: DictDataset, batch_size: int, seed: int, rank: int = 0, world_size: int = 1
) -> tuple[DataLoader, DistributedSampler]:
    """A shuffled loader whose global batch is the same for any number of processes.

    The sampler is a ``DistributedSampler`` even for one process, so a one-process
    run and a DDP run see the same samples in the same global steps.
    """
    if batch_size % world_size:
        raise ValueError(f"batch_size {batch_size} must be divisible by the number of processes {world_size}")
    sampler = DistributedSampler(dataset, num_replicas=world_size, rank=rank, shuffle=True, seed=seed)
    loader = DataLoader(dataset, batch_size=batch_size // world_size, sampler=sampler, collate_fn=_identity)
    return loader, sampler


def iterate(dataset: DictDataset, batch_size: int = 512) -> Iterator[Batch]:
    """Ordered batches without a DataLoader (for quick feature extraction)."""
    for start in range(0, len(dataset), batch_size):
        yield dataset.batch(range(start, min(start + batch_size, len(dataset))))
