"""Run records: one JSON file per training run, keyed by everything that changes its numbers, committed.

A record's **key** hashes the run's spec (data and options, method and arguments, training config, seed), the
device type and thread count, and a **code fingerprint**: the hash of the normalised syntax tree (comments and
docstrings removed) of every package module the run's code imports, followed transitively from the method's
module, the training loop, evaluation and the data loader.  Editing any of that code changes the key, so a
stale record is never loaded; editing a plot or a chapter does not.  ``MMREPRO_RERUN=1`` recomputes every run.

Records live in ``results/<chapter>/`` and are written atomically, one per finished run, so an interrupted grid
loses at most the runs in flight.  ``python -m mmrepro.records verify results/<chapter>`` re-derives one record
chosen at random and fails if its metrics differ.
"""

from __future__ import annotations

import argparse
import ast
import contextlib
import hashlib
import importlib.util
import json
import multiprocessing
import os
import random
import re
import sys
from concurrent.futures import ProcessPoolExecutor, as_completed
from functools import lru_cache
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence

import numpy as np
import pandas as pd
import torch
from threadpoolctl import threadpool_limits

from . import data as datasets
from . import methods
from .experiment import RunSpec, check_buildable, execute
from .verdict import run_converged
from .results import provenance, write_json

PACKAGE = Path(__file__).resolve().parent
ROOT = PACKAGE.parent
RESULTS = ROOT / "results"
BASE_MODULES = ("mmrepro.train", "mmrepro.evaluate", "mmrepro.experiment")
RECORD_VERSION = 1


class RecordError(RuntimeError):
    """A record file that cannot be read, or a re-derived run that disagrees with its record."""


def _module_path(name: str) -> Path | None:
    """The source file of a module: ``mmrepro.x.y`` found on disk without importing it, others by importlib."""
    if name.split(".")[0] != "mmrepro":
        spec = importlib.util.find_spec(name)
        return Path(spec.origin) if spec is not None and spec.origin and spec.origin.endswith(".py") else None
    base = PACKAGE.joinpath(*name.split(".")[1:])
    for path in (base.with_suffix(".py"), base / "__init__.py"):
        if path.is_file():
            return path
    return None


def _normalised(tree: ast.AST) -> str:
    """The syntax tree without docstrings: formatting, comments and documentation do not change numbers."""
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if isinstance(body, list) and body and isinstance(body[0], ast.Expr) \
                and isinstance(getattr(body[0], "value", None), ast.Constant) and isinstance(body[0].value.value, str):
            node.body = body[1:] or [ast.Pass()]
    return ast.dump(tree, annotate_fields=False)


def _imports(name: str, tree: ast.AST, is_package: bool) -> set[str]:
    """The ``mmrepro`` modules a module imports (relative imports resolved)."""
    package = name if is_package else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("mmrepro.")}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                base = ".".join(parts[:len(parts) - node.level + 1] + ([base] if base else []))
            if not base.startswith("mmrepro"):
                continue
            found.add(base)
            found |= {f"{base}.{a.name}" for a in node.names if _module_path(f"{base}.{a.name}") is not None}
    return {m for m in found if m != "mmrepro" and _module_path(m) is not None}


@lru_cache(maxsize=None)
def _module_hash(name: str) -> tuple[str, frozenset[str]]:
    path = _module_path(name)
    if path is None:
        raise ValueError(f"no Python source found for module {name!r}, so its code cannot be part of a run's key")
    tree = ast.parse(path.read_text(), filename=str(path))
    deps = _imports(name, tree, path.name == "__init__.py")
    return hashlib.sha256(_normalised(tree).encode()).hexdigest(), frozenset(deps)


def code_fingerprint(roots: Sequence[str]) -> dict[str, str]:
    """Module name -> AST hash for ``roots`` and every package module they import, transitively.

    Imports are followed through modules, not through package ``__init__`` files (re-export hubs), so a
    method's record depends on its own module and what it uses, not on every other method.
    """
    seen: dict[str, str] = {}
    todo = list(roots)
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        digest, deps = _module_hash(name)
        seen[name] = digest
        if _module_path(name).name != "__init__.py":  # a package's __init__ re-exports: its own text is hashed,
            todo.extend(deps)                         # the roots name the modules actually used

    return dict(sorted(seen.items()))


def method_module(name: str) -> str:
    """The module that defines a registered method (``unimodal`` is joint training)."""
    return methods.REGISTRY["joint" if name == "unimodal" else name].__module__


def data_module(name: str) -> str:
    """The module of a dataset's loader, for the fingerprint."""
    if name not in datasets.LOADERS:
        raise ValueError(f"unknown dataset {name!r}; valid: {', '.join(datasets.LOADERS)}")
    loader = datasets.LOADERS[name]
    return getattr(loader, "func", loader).__module__  # a functools.partial names its function


def _device_type(device: str) -> str:
    return ("cuda" if torch.cuda.is_available() else "cpu") if device == "auto" else device.split(":")[0]


def key(spec: RunSpec, device: str = "auto") -> str:
    """The run's key: spec, device type, threads and code fingerprint, hashed."""
    roots = (method_module(spec.method), data_module(spec.data["name"]), *BASE_MODULES, *spec.code_roots())
    payload = {"spec": {k: v for k, v in spec.as_dict().items() if k != "arm"}, "device": _device_type(device),
               "threads": torch.get_num_threads() if _device_type(device) == "cpu" else None,
               "code": code_fingerprint(roots), "version": RECORD_VERSION}
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


def path_for(chapter: str, spec: RunSpec, run_key: str, root: Path = RESULTS) -> Path:
    return root / chapter / f"{_slug(spec.arm)}-s{spec.seed}-{run_key}.json"


def read(path: Path) -> dict[str, Any]:
    """A record from disk; a corrupt file is an error naming it and saying how to recover."""
    try:
        record = json.loads(Path(path).read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise RecordError(f"cannot read run record {path}: {err}. Delete it to recompute that run.") from err
    missing = [k for k in ("key", "spec", "metrics", "items", "converged") if k not in record]
    if missing:
        raise RecordError(f"run record {path} lacks {missing}; delete it to recompute that run")
    return record


@contextlib.contextmanager
def capped_pools(threads: int | None = None) -> Iterator[None]:
    """BLAS and OpenMP pools (numpy's, scikit-learn's) limited to ``threads``, default torch's thread count.

    Without it each grid worker's linear-algebra library starts one thread per core beside torch's, and two
    workers on two cores oversubscribe them (the probe's logistic regression was most of a run's CPU time).
    """
    limit = torch.get_num_threads() if threads is None else threads
    if limit < 1:
        raise ValueError(f"a thread pool needs at least one thread, got {limit}")
    with threadpool_limits(limits=limit):
        yield


def _run(spec: RunSpec, device: str, threads: int | None) -> dict[str, Any]:
    """Worker body: fix the thread count, cap the BLAS/OpenMP pools to it, then execute (the key is computed
    under the same thread count)."""
    if threads is not None:
        torch.set_num_threads(threads)
    with capped_pools():
        record = execute(spec, device)
    return {**record, "key": key(spec, device), **{"provenance": provenance()}}


def _rerun() -> bool:
    return os.environ.get("MMREPRO_RERUN", "0") not in ("", "0")


def run_grid(chapter: str, specs: Sequence[RunSpec], device: str = "auto", processes: int | None = None,
             threads: int | None = 1, shard: tuple[int, int] | None = None, root: Path = RESULTS,
             save: bool = True) -> "Grid":
    """Load every spec's record when one with its key exists (here or in another chapter's folder); train the
    missing ones, saving each as it ends.

    ``processes`` worker processes (default: 2 on CPU, 1 on a GPU) of ``threads`` threads each train the
    missing runs; ``shard=(i, n)`` trains only the missing runs whose position in ``specs`` is ``i`` modulo
    ``n``, so the processes of a cluster job fill one grid without training a run twice (``shard_from_env``
    reads the launcher's rank); ``save=False`` trains without writing (the smoke profile).
    """
    _check_specs(specs)
    if threads is not None:
        torch.set_num_threads(threads)
    keys = [key(s, device) for s in specs]
    paths = [path_for(chapter, s, k, root) for s, k in zip(specs, keys)]
    records: dict[int, dict] = {} if _rerun() else _load(specs, keys, paths, root)
    missing = [i for i in range(len(specs)) if i not in records]
    if shard is not None:  # by the spec's position, so every process agrees on who trains what
        missing = [i for i in missing if i % shard[1] == shard[0]]
    check_buildable([specs[i] for i in missing])
    computed = _train(specs, missing, device, processes, threads, paths if save else None)
    records.update(computed)
    loaded = len(records) - len(computed)
    return Grid(chapter, [records[i] for i in sorted(records)], loaded, len(computed), _stale(chapter, paths, root))


def _load(specs: Sequence[RunSpec], keys: Sequence[str], paths: Sequence[Path], root: Path) -> dict[int, dict]:
    """The records that exist for these keys: in the chapter's folder, or any other chapter's (same key, same run)."""
    found = {}
    for i, (spec, run_key, path) in enumerate(zip(specs, keys, paths)):
        elsewhere = sorted(root.glob(f"*/*-{run_key}.json"))
        source = path if path.is_file() else (elsewhere[0] if elsewhere else None)
        if source is not None:
            found[i] = {**read(source), "arm": spec.arm}  # the key leaves out the label: this chapter's name for it
    return found


def shard_from_env() -> tuple[int, int] | None:
    """(index, count) of this process in a ``torchrun`` launch (RANK/WORLD_SIZE) or a SLURM array job."""
    env = os.environ
    if "SLURM_ARRAY_TASK_ID" in env and "SLURM_ARRAY_TASK_COUNT" in env:
        index, count = int(env["SLURM_ARRAY_TASK_ID"]) - int(env.get("SLURM_ARRAY_TASK_MIN", 0)), int(env["SLURM_ARRAY_TASK_COUNT"])
    elif "RANK" in env and "WORLD_SIZE" in env:
        index, count = int(env["RANK"]), int(env["WORLD_SIZE"])
    else:
        return None
    if not 0 <= index < count:
        raise ValueError(f"shard index {index} is outside 0..{count - 1}")
    return index, count


def _check_specs(specs: Sequence[RunSpec]) -> None:
    seen = set()
    for s in specs:
        ident = (s.arm, s.seed)
        if ident in seen:
            raise ValueError(f"two specs for arm {s.arm!r} and seed {s.seed}: each (arm, seed) is one run")
        seen.add(ident)


def _train(specs: Sequence[RunSpec], todo: Sequence[int], device: str, processes: int | None, threads: int | None,
           paths: Sequence[Path] | None) -> dict[int, dict]:
    """Train ``todo`` specs, in worker processes when more than one is asked for; save each record when done."""
    if not todo:
        return {}
    workers = processes or (1 if _device_type(device) == "cuda" else 2)
    out: dict[int, dict] = {}

    def done(i: int, record: dict) -> None:
        out[i] = record
        if paths is not None:
            write_json(paths[i], record, indent=None)

    if workers == 1 or len(todo) == 1:
        for i in todo:
            done(i, _run(specs[i], device, threads))
        return out
    ctx = multiprocessing.get_context("spawn")  # no fork after torch has started threads
    with ProcessPoolExecutor(max_workers=min(workers, len(todo)), mp_context=ctx) as pool:
        futures = {pool.submit(_run, specs[i], device, threads): i for i in todo}
        for future in as_completed(futures):
            done(futures[future], future.result())
    return out


def _stale(chapter: str, paths: Sequence[Path], root: Path) -> list[Path]:
    """Record files in the chapter's folder that no current spec produces (old keys)."""
    folder = root / chapter
    current = set(paths)
    return sorted(p for p in folder.glob("*.json") if p not in current) if folder.is_dir() else []


class Grid:
    """The records of a chapter's runs, and how many were loaded, computed and left stale."""

    def __init__(self, chapter: str, records: list[dict], loaded: int, computed: int, stale: list[Path]):
        self.chapter, self.records, self.loaded, self.computed, self.stale = chapter, records, loaded, computed, stale

    def table(self, columns: Sequence[str] = ()) -> pd.DataFrame:
        """One row per run: arm, seed, convergence, and the requested test metrics."""
        rows = [{"arm": r["arm"], "seed": r["seed"], "best epoch": r["best_epoch"], "epochs": r["epochs"],
                 "converged": run_converged(r), "final train loss": _final_loss(r),
                 **{c: r["metrics"].get(c, float("nan")) for c in columns}} for r in self.records]
        return pd.DataFrame(rows)

    def convergence(self) -> pd.DataFrame:
        """Per arm: best epoch (mean and range) over epochs, converged runs, and the mean final train loss."""
        t = self.table()
        return t.groupby("arm", sort=False).agg(
            runs=("seed", "size"), epochs=("epochs", "max"), best_epoch_mean=("best epoch", "mean"),
            best_epoch_max=("best epoch", "max"), converged=("converged", "sum"),
            final_train_loss=("final train loss", "mean")).round(3)

    def provenance(self) -> pd.Series:
        """How many runs were loaded and computed, where and when, and the compute they represent."""
        devices = sorted({r["device"] for r in self.records})
        times = sorted(r["provenance"]["time"] for r in self.records if "provenance" in r)
        return pd.Series({
            "runs": len(self.records), "loaded from records": self.loaded, "computed now": self.computed,
            "device": "; ".join(devices), "made": f"{times[0]} to {times[-1]}" if times else "—",
            "CPU time (h)": round(sum(r["cpu_time"] for r in self.records) / 3600, 2),
            "wall time of the runs (h)": round(sum(r["wall_time"] for r in self.records) / 3600, 2),
            "stale record files": len(self.stale)}, name=self.chapter)


def save_verdicts(chapter: str, table: pd.DataFrame, profile: str, root: Path = RESULTS) -> Path | None:
    """Write a chapter's verdict table (``verdict.judge``'s, one row per claim) to ``results/verdicts-<chapter>.csv``
    at the book profile, so another page can cite the page's own verdicts; nothing at the other profiles."""
    if profile != "book":
        return None
    path = root / f"verdicts-{chapter}.csv"
    path.parent.mkdir(parents=True, exist_ok=True)
    table[["outcome", "effect", "low", "high", "seeds"]].rename_axis("claim").to_csv(path)
    return path


def read_verdicts(chapter: str, root: Path = RESULTS) -> pd.DataFrame:
    """A chapter's saved verdict table, indexed by claim; a clear error if the chapter has not saved one."""
    path = root / f"verdicts-{chapter}.csv"
    if not path.is_file():
        raise FileNotFoundError(f"no saved verdicts of chapter {chapter!r} ({path}); build that chapter at the book "
                                f"profile first (make records CHAPTERS={chapter})")
    return pd.read_csv(path, index_col="claim")


def validation_score(record: Mapping) -> float:
    """The validation accuracy of the epoch a run kept (its selected epoch), for choices made on validation."""
    rows = [r for r in record["history"] if r["epoch"] == record["selected_epoch"]]
    if not rows or "val_accuracy" not in rows[0]:
        raise ValueError(f"record {record['arm']!r} seed {record['seed']} has no val_accuracy at its selected epoch")
    return float(rows[0]["val_accuracy"])


def _final_loss(record: Mapping) -> float:
    last = record["history"][-1]
    return float(last.get("train_loss", float("nan")))


def _current(record: Mapping) -> bool:
    """Whether the current code gives the record's spec its key (a GPU record is taken as it is)."""
    device = "cpu" if record["device"].startswith("cpu") else "cuda"
    return device != "cpu" or key(RunSpec.from_dict(record["spec"]), device) == record["key"]


def stale(folder: Path) -> list[str]:
    """The record files of ``folder`` whose key is not what the current code gives their spec."""
    files = sorted(Path(folder).glob("*.json"))
    if not files:
        raise RecordError(f"no run records in {folder}")
    torch.set_num_threads(1)  # keys include the thread count the grids run under
    return [file.name for file in files if not _current(read(file))]  # a corrupt file is an error, not stale


def verify(folder: Path, pick: str | None = None, tolerance: float = 1e-6, cap_pools: bool = True) -> str:
    """Check every record of ``folder`` is current, then re-derive one (random, or ``pick``) and compare its metrics
    and per-item scores.  The run is re-derived as a grid worker runs it (one thread, BLAS/OpenMP pools capped to
    it); ``cap_pools=False`` leaves the pools at their defaults, to show the cap does not change a record."""
    outdated = stale(folder)  # every record's key against the current code: cheap, and no stale record hides
    if outdated:
        raise RecordError(f"{', '.join(outdated)} is stale: its key is not the current code's; recompute the "
                          "chapter's grid (MMREPRO_RERUN=1, or delete the file and rebuild)")
    files = sorted(Path(folder).glob("*.json"))
    path = Path(folder) / pick if pick else random.SystemRandom().choice(files)
    record = read(path)
    if not record["device"].startswith("cpu"):
        raise RecordError(f"{path.name} was made on {record['device']}; re-derive it on that device type")
    with capped_pools() if cap_pools else contextlib.nullcontext():
        fresh = execute(RunSpec.from_dict(record["spec"]), "cpu")
    diffs = {m: (v, fresh["metrics"].get(m)) for m, v in record["metrics"].items()
             if abs(v - fresh["metrics"].get(m, float("inf"))) > tolerance}
    diffs.update({f"items[{m}]": "differ" for m, v in record.get("items", {}).items()
                  if not _same_items(v, fresh.get("items", {}).get(m), tolerance)})
    if diffs:
        raise RecordError(f"{path.name}: re-derived metrics differ from the record: {diffs}")
    pools = "BLAS/OpenMP pools capped to 1 thread" if cap_pools else "BLAS/OpenMP pools uncapped"
    return (f"{folder}: {len(files)} records match the current code; {path.name}: {len(record['metrics'])} metrics "
            f"and {len(record.get('items', {}))} per-item scores re-derived identically ({pools})")


def _same_items(recorded: Sequence, fresh: Sequence | None, tolerance: float) -> bool:
    """Two per-item score arrays agree: same shape (flat, or one row per item as regression errors are), every
    entry within ``tolerance``, NaN where the other is NaN."""
    if fresh is None:
        return False
    a, b = np.asarray(recorded, dtype=float), np.asarray(fresh, dtype=float)
    return a.shape == b.shape and bool(np.allclose(a, b, rtol=0.0, atol=tolerance, equal_nan=True))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m mmrepro.records", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    check = sub.add_parser("verify", help="re-derive one record per folder and compare its metrics")
    check.add_argument("folders", nargs="+", type=Path)
    check.add_argument("--pick", help="the record file to re-derive (default: one at random)")
    check.add_argument("--no-pool-cap", action="store_true",
                       help="re-derive with BLAS/OpenMP pools at their defaults (grid workers cap them to 1 thread)")
    keys = sub.add_parser("stale", help="list the records whose key the current code no longer gives (no training)")
    keys.add_argument("folders", nargs="+", type=Path)
    args = parser.parse_args(argv)
    if args.command == "stale":
        counts = {folder: stale(folder) for folder in args.folders}
        for folder, names in counts.items():
            print(f"{folder}: {len(names)} stale" + "".join(f"\n  {n}" for n in names), flush=True)
        return 1 if any(counts.values()) else 0
    for folder in args.folders:
        print(verify(folder, args.pick, cap_pools=not args.no_pool_cap), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
