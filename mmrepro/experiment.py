"""Repeat a training recipe over seeds, and run one declared spec end to end: what chapters are made of.

``RunSpec`` declares a run as data (dataset and options, method and arguments, training config, seed, what to
measure), so a run can be recorded, keyed, re-derived from its record and sharded across processes;
``execute(spec)`` builds, trains and measures it.
"""

from __future__ import annotations

import importlib
import math
import multiprocessing
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Iterable, Mapping, Sequence

import pandas as pd
import torch

from . import data as datasets
from . import evaluate, methods
from .data.core import LABEL, Splits
from .methods.base import Method
from .train import FitResult, Monitor, TrainConfig, fit, seed_everything

#: how a run is judged converged: the best validation epoch is not in the last fifth of training
CONVERGENCE_RULE = "the best validation epoch lies before the last fifth of the epochs"
Measure = Callable[..., tuple[dict[str, float], dict[str, list[float]]]]  # (method, splits, **options)
MeasureSpec = str | tuple[str, dict[str, Any]]  # a name, or (name, options)


def _probe(method: Method, splits: Splits) -> tuple[dict[str, float], dict[str, list[float]]]:
    """Each modality's linear probe: test accuracy and per-item correctness (``probe_<modality>``)."""
    metrics, items = {}, {}
    for m, pred in evaluate.linear_probes_predictions(method, splits).items():
        pred = torch.as_tensor(pred)
        items[f"probe_{m}"] = (pred == splits.test.tensors[LABEL]).float().tolist()
        metrics[f"probe_{m}"] = sum(items[f"probe_{m}"]) / len(pred)
    return metrics, items


#: built-in monitors and measures; any other name is a ``"package.module:function"`` path
MONITORS: dict[str, Monitor] = {"shapley": evaluate.shapley_monitor}
MEASURES: dict[str, Measure] = {"probe": _probe}


def resolve(name: str, builtin: dict[str, Callable]) -> Callable:
    """A built-in by name, or a function by its ``"package.module:function"`` path; a clear error otherwise."""
    if name in builtin:
        return builtin[name]
    module, _, attr = name.partition(":")
    if not attr:
        raise ValueError(f"unknown name {name!r}; valid: {', '.join(builtin)} or a 'package.module:function' path")
    try:
        return getattr(importlib.import_module(module), attr)
    except (ImportError, AttributeError) as err:
        raise ValueError(f"cannot import {name!r}: {err}") from err


def measure_name(item: MeasureSpec) -> str:
    return item if isinstance(item, str) else item[0]
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


def converged(history: pd.DataFrame, task: str = "classification") -> tuple[bool, int]:
    """(converged by ``CONVERGENCE_RULE``, best validation epoch), from the validation curve alone."""
    score = history["val_accuracy"] if task == "classification" else -history["val_mse"]
    epochs, best = len(history), int(history["epoch"].iloc[int(score.to_numpy().argmax())])
    return best < epochs - max(1, math.ceil(epochs / 5)), best


@dataclass(frozen=True)
class RunSpec:
    """One training run as data: everything that changes its numbers, and nothing else."""

    arm: str
    method: str
    seed: int
    data: dict[str, Any]
    train: dict[str, Any]
    method_kwargs: dict[str, Any] = field(default_factory=dict)
    build: dict[str, Any] = field(default_factory=dict)
    subsample: int | None = None
    monitor: str | None = None
    measures: tuple[MeasureSpec, ...] = ()

    def __post_init__(self) -> None:
        if self.monitor is not None:
            resolve(self.monitor, MONITORS)
        for item in self.measures:
            resolve(measure_name(item), MEASURES)
        for key in ("seed", "device", "progress", "checkpoint_dir", "resume"):
            if key in self.train:
                raise ValueError(f"train config must not set {key!r}: the spec or the executor sets it")
        TrainConfig(**self.train)  # an impossible config fails here, before any training

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "measures": [m if isinstance(m, str) else list(m) for m in self.measures]}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "RunSpec":
        """The spec a record was made from (JSON turns tuples into lists)."""
        measures = tuple(m if isinstance(m, str) else (m[0], dict(m[1])) for m in data.get("measures", ()))
        return cls(**{**data, "measures": measures})

    def build_method(self, splits: Splits) -> Method:
        """The spec's method with a fresh model for ``splits`` (seed first for reproducible weights)."""
        return methods.build(self.method, splits, **self.build, **self.method_kwargs)

    def code_roots(self) -> list[str]:
        """Modules of the monitor and measures named by path: their code is part of the run's key."""
        names = [self.monitor] if self.monitor else []
        names += [measure_name(m) for m in self.measures]
        return [n.partition(":")[0] for n in names if ":" in n]

    def splits(self) -> Splits:
        """The run's data: the named dataset with its options, optionally subsampled, restricted to a modality."""
        splits = datasets.load(**self.data)
        if self.subsample is not None:
            splits = splits.subsample_train(self.subsample, seed=0)
        return splits


def check_buildable(specs: Sequence[RunSpec]) -> None:
    """Build every distinct method of ``specs`` once, so a bad setting fails before any training."""
    seen: set[str] = set()
    for spec in specs:
        ident = repr((spec.data, spec.method, spec.build, spec.method_kwargs))
        if ident in seen:
            continue
        seen.add(ident)
        try:
            spec.build_method(spec.splits())
        except (ValueError, TypeError, KeyError) as err:
            raise ValueError(f"arm {spec.arm!r} cannot be built: {err}") from err


def _items(p: evaluate.Predictions, task: str) -> tuple[dict[str, float], dict[str, list]]:
    """Test metrics and the per-item scores (means of which are the metrics) that verdict intervals use."""
    metrics = evaluate.metrics(p, task)
    if task == "regression":
        err = (p.logits.view_as(p.labels).float() - p.labels.float())
        return metrics, {"abs_error": err.abs().tolist()}
    items: dict[str, list] = {"accuracy": (p.logits.argmax(-1) == p.labels).float().tolist()}
    for m, logits in p.unimodal_logits.items():
        items[f"accuracy_{m}"] = (logits.argmax(-1) == p.labels).float().tolist()
    return metrics, items


def execute(spec: RunSpec, device: str = "auto") -> dict[str, Any]:
    """Build, train and measure one run: the body of a run record (provenance is added by ``records``)."""
    start, cpu_start = time.perf_counter(), time.process_time()
    splits = spec.splits()
    run_splits = splits.select([spec.build["modality"]]) if spec.method == "unimodal" else splits
    seed_everything(spec.seed)
    method = spec.build_method(splits)
    monitor = resolve(spec.monitor, MONITORS) if spec.monitor else None
    result = fit(method, run_splits, TrainConfig(**spec.train), monitor=monitor, seed=spec.seed, device=device)
    predictions = evaluate.predict(method, run_splits.test, batch_size=result.config["eval_batch_size"])
    metrics, items = _items(predictions, splits.task)
    outputs = predictions.logits.argmax(-1) if splits.task == "classification" else predictions.logits.view(-1)
    for item in spec.measures:
        options = {} if isinstance(item, str) else item[1]
        extra_metrics, extra_items = resolve(measure_name(item), MEASURES)(method, run_splits, **options)
        metrics.update(extra_metrics)
        items.update(extra_items)
    ok, best = converged(result.history, splits.task)
    return {"arm": spec.arm, "seed": spec.seed, "spec": spec.as_dict(), "history": result.history.to_dict("records"),
            "epochs": len(result.history), "best_epoch": best, "selected_epoch": result.best_epoch,
            "converged": ok, "convergence_rule": CONVERGENCE_RULE, "metrics": metrics, "items": items,
            "labels": run_splits.test.tensors[LABEL].tolist(),
            "predictions": outputs.tolist(), "device": result.device,
            "wall_time": time.perf_counter() - start, "cpu_time": time.process_time() - cpu_start}
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
