"""Run records with provenance, and the papers' reported numbers as data.

A run record is JSON: config, metrics, package version, git commit, device,
wall time and timestamp, written atomically.  Reported numbers live in
``mmrepro/reported/<paper>.csv`` with a ``source`` column naming where each
number was read.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import tempfile
from datetime import datetime, timezone
from importlib import resources
from pathlib import Path
from typing import Any, Callable

import pandas as pd
import torch

from . import __version__

REPORTED_COLUMNS = ("paper", "dataset", "setting", "method", "metric", "value", "source")


def git_commit() -> str | None:
    """The commit of the working tree the package runs from, if it is a git checkout."""
    try:
        root = Path(__file__).resolve().parent.parent
        out = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5)
        return out.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def provenance(device: str | None = None) -> dict[str, Any]:
    """Where and with what a result was produced."""
    return {
        "mmrepro": __version__, "git_commit": git_commit(), "torch": torch.__version__,
        "python": platform.python_version(), "platform": platform.platform(),
        "device": device or ("cuda" if torch.cuda.is_available() else "cpu"),
        "time": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }


def write_json(path: str | Path, payload: dict[str, Any], indent: int | None = 2) -> Path:
    """Write JSON atomically: a reader sees the old file or the new one, never half of one.

    ``indent=None`` writes it compactly (run records: a third smaller, and they are committed by the hundred)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as handle:
            json.dump(payload, handle, indent=indent, default=str,
                      separators=(",", ":") if indent is None else None)
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)  # no half-written temporary file left behind
        raise
    return path


def save_run(path: str | Path, config: dict[str, Any], metrics: Any, wall_time: float, device: str) -> Path:
    """A run record: config, metrics (any JSON-able value), wall time and provenance."""
    return write_json(path, {"config": config, "metrics": metrics, "wall_time": wall_time, **provenance(device)})


def read_json(path: str | Path) -> Any:
    """A JSON file's contents, or ``ValueError`` naming the file when it is truncated or not JSON."""
    try:
        return json.loads(Path(path).read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ValueError(f"{path} is not valid JSON ({error}); it is truncated or corrupt: delete it to "
                         "recompute the record") from error


def load_or_run(path: str | Path, run: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """Load a saved record if it exists, else call ``run()`` (which returns a record) and save it."""
    path = Path(path)
    if path.is_file():
        return read_json(path)
    record = run()
    write_json(path, record)
    return record


def reported(paper: str) -> pd.DataFrame:
    """The numbers a paper (or its peers) reported, each with its source, as a table."""
    name = f"{paper}.csv"
    folder = resources.files("mmrepro").joinpath("reported")
    available = sorted(p.name[:-4] for p in folder.iterdir() if p.name.endswith(".csv"))
    if paper not in available:
        raise ValueError(f"no reported numbers for {paper!r}; available: {', '.join(available)}")
    with folder.joinpath(name).open() as handle:
        table = pd.read_csv(handle)
    missing = [c for c in REPORTED_COLUMNS if c not in table.columns]
    if missing:
        raise ValueError(f"reported/{name} lacks columns {missing}")
    return table
