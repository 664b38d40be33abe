"""Repeat a training recipe over seeds and summarise: what every chapter's tables are made of."""

from __future__ import annotations

import multiprocessing
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Mapping, Sequence

import pandas as pd
import torch

from .data.core import Splits
from .methods.base import Method
from .train import FitResult, Monitor, TrainConfig, fit, seed_everything

Factory = Callable[[], Method]


@dataclass
class Trained:
    """A trained method with its fit result and seed, and what a per-run ``measure`` hook returned."""

    method: Method
    fit: FitResult
    seed: int
    measures: dict[str, Any] = field(default_factory=dict)


#: the jobs of the running pool, read by forked workers (closures in notebooks cannot be pickled)
_JOBS: list[tuple[Factory, Splits, TrainConfig, int, Monitor | None]] = []


def _train_job(index: int) -> tuple[Method, FitResult]:
    """Seed, build (so initial weights depend on the seed) and fit job ``index``."""
    factory, splits, cfg, seed, monitor = _JOBS[index]
    seed_everything(seed)
    method = factory()
    return method, fit(method, splits, cfg, monitor=monitor, seed=seed)


def _forked_job(index: int) -> tuple[dict, FitResult]:
    method, result = _train_job(index)
    return method.state_dict(), result


def _one_thread() -> None:
    torch.set_num_threads(1)  # a forked worker shares the cores with its siblings


def _rebuilt(factory: Factory, state: dict) -> Method:
    method = factory()
    method.load_state_dict(state)
    return method.eval()


def train_seeds(factory: Factory, splits: Splits, cfg: TrainConfig, seeds: Iterable[int],
                monitor: Monitor | None = None, workers: int = 1, subsample: int | None = None,
                measure: Callable[[Trained], dict[str, Any]] | None = None) -> list[Trained]:
    """Seed, build and fit once per seed; the numbers do not depend on ``workers``.

    ``workers > 1`` trains in that many forked processes (CPU only: CUDA does not
    survive a fork) and rebuilds each method here from its trained ``state_dict``, so
    only registered parameters and buffers come back.  ``subsample=n`` trains on
    ``splits.subsample_train(n)`` (the same rows for every seed, so arms stay paired).
    ``measure(run)`` fills each run's ``measures``.
    """
    return train_arms({None: factory}, splits, cfg, seeds, monitor, workers, subsample, measure)[None]


def train_arms(arms: Mapping[Any, Factory], splits: Splits, cfg: TrainConfig, seeds: Iterable[int],
               monitor: Monitor | None = None, workers: int = 1, subsample: int | None = None,
               measure: Callable[[Trained], dict[str, Any]] | None = None) -> dict[Any, list[Trained]]:
    """``train_seeds`` for several arms at once (one pool for every arm and seed): ``{arm: [Trained]}``."""
    seeds = list(seeds)
    data = splits if subsample is None else splits.subsample_train(subsample)
    labels = [(arm, seed) for arm in arms for seed in seeds]
    _JOBS[:] = [(arms[arm], data, cfg, seed, monitor) for arm, seed in labels]
    try:
        if workers == 1 or len(labels) == 1:
            results = [_train_job(i) for i in range(len(labels))]
        else:
            with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("fork"),
                                     initializer=_one_thread) as pool:
                results = [(_rebuilt(arms[arm], state), fit_result)
                           for (arm, _), (state, fit_result) in zip(labels, pool.map(_forked_job, range(len(labels))))]
    finally:
        _JOBS.clear()
    runs: dict[Any, list[Trained]] = {arm: [] for arm in arms}
    for (arm, seed), (method, result) in zip(labels, results):
        run = Trained(method, result, seed)
        run.measures = measure(run) if measure is not None else {}
        runs[arm].append(run)
    return runs


def spread(values: Sequence[float] | pd.Series) -> float:
    """The sample standard deviation (ddof 1) over seeds; 0 for a single value."""
    series = pd.Series(values, dtype=float)
    return float(series.std(ddof=1)) if len(series) > 1 else 0.0


def mean_std(data: pd.DataFrame, by: str | Sequence[str], columns: Sequence[str], scale: float = 100.0,
             digits: int = 1) -> pd.DataFrame:
    """'mean ± std' strings per group (std over the rows of a group, i.e. over seeds)."""
    grouped = data.groupby(by, sort=False)[list(columns)]
    mean, std = grouped.mean() * scale, grouped.std(ddof=1).fillna(0.0) * scale
    text = mean.combine(std, lambda m, s: m.map(f"{{:.{digits}f}}".format) + " ± " + s.map(f"{{:.{digits}f}}".format))
    return text.mask(mean.isna(), "—")  # a column that does not apply to a group


def paired_difference(frame: pd.DataFrame, column: str, arm: Any, base: Any, key: str = "arm",
                      pair: str = "seed") -> pd.Series:
    """Per-seed ``arm - base`` of one column (rows matched on ``pair``; unmatched seeds dropped)."""
    a = frame[frame[key] == arm].set_index(pair)[column]
    b = frame[frame[key] == base].set_index(pair)[column]
    return (a - b).dropna()


def format_pm(values: Sequence[float] | pd.Series, scale: float = 100.0, digits: int = 1, signed: bool = False,
              unit: str = "") -> str:
    """'mean ± spread' of values over seeds, e.g. ``+1.2 ± 0.8 pts`` (``signed`` shows the mean's sign)."""
    series = pd.Series(values, dtype=float)
    sign = "+" if signed else ""
    return f"{scale * series.mean():{sign}.{digits}f} ± {scale * spread(series):.{digits}f}{unit}"
