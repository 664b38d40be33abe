"""CMU-MOSI / CMU-MOSEI from the aligned-feature pickles their community shares.

The layout is the one of MulT (Tsai et al., 2019) and MMIM (Han et al., 2021):
``mosi_data.pkl`` / ``mosei_senti_data.pkl`` (``*_noalign.pkl`` for unaligned
features) hold ``{"train" | "valid" | "test": {"text": (N, L, 300) GloVe,
"audio": (N, L, 74) COVAREP, "vision": (N, L, 35 or 47) Facet,
"labels": (N, 1, 1) sentiment in [-3, 3], "id": ...}}``.  Audio holds ``-inf``
entries, which MulT's loader sets to 0; we do the same for every non-finite value.
The pickles are read with a restricted unpickler (``safe_pickle``): NumPy arrays,
dicts, lists and scalars only, so a crafted file cannot run code when loaded.
The files cannot be downloaded here (they live on Google Drive); put them in
``$MMREPRO_DATA_DIR/mosi`` (else the cache's ``data/mosi``) or pass a path.
Their community's metrics are ``mmrepro.evaluate.sentiment_metrics``.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch

from . import safe_pickle
from .core import LABEL, DictDataset, Splits
from .download import DataError, cache_dir

FILES = {"mosi": "mosi_data.pkl", "mosei": "mosei_senti_data.pkl"}
MODALITIES = ("text", "audio", "vision")
SPLITS = {"train": "train", "val": "valid", "test": "test"}


def _default_path(name: str, aligned: bool) -> Path:
    file = FILES[name] if aligned else FILES[name].replace(".pkl", "_noalign.pkl")
    root = os.environ.get("MMREPRO_DATA_DIR")
    return (Path(root) if root else cache_dir() / "data") / "mosi" / file


def _split(raw: dict, key: str, path: Path) -> DictDataset:
    if key not in raw:
        raise DataError(f"{path} has no '{key}' split; found {sorted(raw)}")
    part = raw[key]
    missing = [k for k in (*MODALITIES, "labels") if k not in part]
    if missing:
        raise DataError(f"{path}['{key}'] lacks {missing}; found {sorted(part)}")
    tensors = {m: torch.from_numpy(np.nan_to_num(np.asarray(part[m], dtype=np.float32), nan=0.0, posinf=0.0, neginf=0.0))
               for m in MODALITIES}
    tensors[LABEL] = torch.from_numpy(np.asarray(part["labels"], dtype=np.float32).reshape(-1, 1))
    return DictDataset(tensors, MODALITIES)


def load_mosi(name: str = "mosi", path: str | Path | None = None, aligned: bool = True) -> Splits:
    """CMU-MOSI or CMU-MOSEI as regression splits (``text``, ``audio``, ``vision``; labels (N, 1)), with ``_uid``s."""
    if name not in FILES:
        raise ValueError(f"unknown dataset {name!r}; valid: {', '.join(FILES)}")
    path = Path(path) if path is not None else _default_path(name, aligned)
    if not path.is_file():
        raise DataError(f"{path} not found: download the {name.upper()} pickle of MulT/MMIM "
                        f"({FILES[name]}) and put it there, or pass path=")
    raw = safe_pickle.load(path)
    parts = {ours: _split(raw, theirs, path) for ours, theirs in SPLITS.items()}
    splits = Splits(name, parts["train"], parts["val"], parts["test"], num_classes=1, task="regression",
                    valid_range={m: None for m in MODALITIES}, info={"path": str(path), "aligned": aligned})
    return splits.with_uids()
