"""The leaderboard: every method under one protocol on several settings, with intervals and costs.

**The grid.** A *cell* is one method on one setting.  Every cell gets the same tuning budget: the recipes of
``RECIPES`` on seed 0, the one with the best validation accuracy kept, then that recipe on the other seeds.  The
tuning runs are recorded under their own arm label (``"<method> | <setting> | <recipe>"``); the chosen recipe's
seed-0 run has the same key as its tuning run, so it is loaded from that record, never trained twice.

**The statistics.** A cell's effect is its paired difference from joint training on the same setting and seeds
(``verdict.compare``: seed and test-item noise).  The aggregate is the probability that a method's run beats a
joint run of the same setting (ties count half), averaged over settings so that no setting dominates, with a
stratified bootstrap interval (``scipy.stats.bootstrap``: every setting's seeds of each arm resampled on their
own).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd
import torch
from scipy import stats

from .. import data as datasets
from .. import methods as registry
from .. import plots, profiles, records, results, verdict
from ..experiment import RunSpec
from ..models.encoders import MLPEncoder, ResNet18Encoder, SmallCNN
from ..train import TrainConfig, fit, seed_everything
from . import mwam as mwam_analysis
from . import udml as udml_analysis
from .pairs import paired

CONDITIONS = "mmrepro.measures.leaderboard:conditions"


@dataclass(frozen=True)
class Setting:
    """A named data configuration: loader options, which runs measure the test-time conditions, a sentence."""

    name: str
    data: dict[str, Any]
    about: str
    conditions: bool = False


SETTINGS: dict[str, Setting] = {s.name: s for s in (
    Setting("AV-Digits", {"name": "av_digits"},
            "spoken digits at 0 dB SNR with clean handwritten digits: audio is the weak modality", conditions=True),
    Setting("image degraded", {"name": "av_digits", "image_noise": 1.0, "audio_snr_db": None},
            "the imbalance reversed: clean audio, images under fixed Gaussian pixel noise of std 1.0"),
    Setting("held-out speakers", {"name": "av_digits", "split": "speaker"},
            "AV-Digits with test and validation voices never heard in training"),
    Setting("third modality", {"name": "av_digits_extra", "num_modalities": 3},
            "AV-Digits plus a third modality of pure Gaussian noise shaped like the image"),
    Setting("mfeat", {"name": "mfeat"}, "UCI Multiple Features: six real feature views of 2,000 handwritten digits"),
)}
#: the test-time conditions: (column name, metric), measured on the models of the "AV-Digits" setting
TEST_CONDITIONS = {"a modality missing": "acc_missing", "mixed per-sample noise": "acc_mixed"}
FAMILIES = ("gaussian", "blur", "occlusion", "salt_pepper")


@dataclass(frozen=True)
class Entry:
    """A method of the leaderboard: its registry name and the constructor options every setting gets."""

    label: str
    method: str
    kwargs: dict[str, Any] = field(default_factory=dict)


METHODS: dict[str, Entry] = {e.label: e for e in (
    Entry("joint", "joint"), Entry("late", "late"), Entry("OGM-GE", "ogm_ge"), Entry("PMR", "pmr"),
    Entry("MMPareto", "mmpareto"), Entry("G-Blending", "gblending"), Entry("AGM", "agm"), Entry("MSLR", "mslr"),
    Entry("Greedy", "greedy"), Entry("QMF", "qmf"), Entry("TMC", "tmc"), Entry("EAU", "eau"), Entry("PDF", "pdf"),
    Entry("MMDynamics", "mmdynamics"), Entry("UDML", "udml", {"noise_epoch": 1, "weight_epoch": 2}),
    Entry("IIBalance", "iibalance"), Entry("MWAM", "mwam"), Entry("BTW", "btw"),
)}
#: BTW keeps a weight per training example: the row id that is unique across splits in each dataset
BTW_UID = {"av_digits": "_mnist_index", "mfeat": "_row", "av_digits_extra": "_uid"}
#: the tuning budget: optimiser recipes tried on seed 0 of every cell
RECIPES: dict[str, dict[str, Any]] = {
    "SGD 0.05": {"optimizer": "sgd", "lr": 0.05, "momentum": 0.9, "weight_decay": 1e-4},
    "SGD 0.01": {"optimizer": "sgd", "lr": 0.01, "momentum": 0.9, "weight_decay": 1e-4},
    "Adam 1e-3": {"optimizer": "adam", "lr": 1e-3, "weight_decay": 1e-4},
}


@dataclass(frozen=True)
class Size:
    """A profile's grid: settings, methods, recipes, seeds and training length."""

    settings: tuple[str, ...]
    methods: tuple[str, ...]
    recipes: tuple[str, ...]
    seeds: tuple[int, ...]
    epochs: int
    patience: int | None
    subsample: int | None = None
    encoder_kwargs: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for name, given, known in (("setting", self.settings, SETTINGS), ("method", self.methods, METHODS),
                                   ("recipe", self.recipes, RECIPES)):
            bad = [g for g in given if g not in known]
            if bad or not given:
                raise ValueError(f"unknown or no {name}s {bad or '()'}; valid: {', '.join(known)}")
        if "joint" not in self.methods:
            raise ValueError("the leaderboard compares every method with 'joint': include it in methods")
        if len(self.seeds) < 2 or 0 not in self.seeds or len(set(self.seeds)) != len(self.seeds):
            raise ValueError(f"seeds must be distinct, at least two, and include the tuning seed 0; got {self.seeds}")


#: the book profile's training length: every cell gets the same cap and early-stopping rule.  The cap is high
#: (the pilot in ``CUTS`` found slow learners still improving at 30 epochs); early stopping ends most runs far
#: sooner, so only runs that still improve pay for it
BOOK_EPOCHS, BOOK_PATIENCE = 100, 5

#: the profiles' grids; ``book`` runs every method under all three recipes (see ``CUTS`` for what it costs)
SIZES: dict[str, Size] = {
    "smoke": Size(("AV-Digits", "mfeat"), ("joint", "OGM-GE", "UDML"), ("Adam 1e-3",), (0, 1), 3, None, 128,
                  {"hidden": 16, "out_dim": 8}),
    "book": Size(("AV-Digits", "held-out speakers", "image degraded", "third modality", "mfeat"),
                 tuple(METHODS), tuple(RECIPES), (0, 1, 2, 3, 4), BOOK_EPOCHS, BOOK_PATIENCE),
    "full": Size(tuple(SETTINGS), tuple(METHODS), tuple(RECIPES), tuple(range(10)), 200, 10),
}
#: the protocol's rules that were set by measurement, and why (the chapter states them)
CUTS = {
    "epoch cap": f"every run trains for up to {BOOK_EPOCHS} epochs with early stopping after {BOOK_PATIENCE} epochs "
                 "without a better validation accuracy.  With a cap of 30, 10 of 492 runs were still improving at "
                 "their last epoch: MMDynamics under Adam 1e-3 on AV-Digits, image degraded and third modality, and "
                 "MSLR on image degraded.  A pilot with a cap of 100 (seed 0 or 2 of those cells) saw them stop on "
                 "their own after 32 to 34 epochs, at the accuracy they had neared by 30.  MMDynamics learns slowly: "
                 "its confidence-weighted loss starts near 7.5 against 2.3 for cross-entropy alone, and under SGD "
                 "(0.05 or 0.01) it stays at or near chance, so Adam is its chosen recipe wherever it runs",
    "recipe choice": "a recipe whose seed-0 run did not converge is chosen only if no recipe's run converged; "
                     "among the converged ones the best validation accuracy wins",
    "BTW": "BTW trains a unimodal predictor per modality before its own model in every run: a pilot run on "
           "AV-Digits (Adam 1e-3, cap 100) took 37.1 CPU s against 1.4 to 1.8 for joint training; its 35 runs "
           "are in the book grid, which stays within its budget of about 1.2 CPU-hours",
}
#: the queue order of the book grid: these methods' cells are trained in separate, later jobs (``--methods``)
LAST = ("MWAM", "BTW")


def size_for(profile: str, settings: Sequence[str] | None = None, seeds: Sequence[int] | None = None,
             methods: Sequence[str] | None = None) -> Size:
    """A profile's grid, optionally restricted to some settings or methods (joint is always kept) or given other
    seeds."""
    base = SIZES[profiles.check(profile)]
    chosen = base.methods if not methods else tuple(m for m in base.methods if m == "joint" or m in methods)
    return replace(base, settings=tuple(settings or base.settings), seeds=tuple(seeds or base.seeds), methods=chosen)


def applies(method: str, setting: str) -> tuple[bool, str]:
    """Whether a method runs on a setting, and why not."""
    entry, data = METHODS[method], SETTINGS[setting].data
    modalities = 6 if data["name"] == "mfeat" else 3 if data["name"] == "av_digits_extra" else 2
    if entry.method == "greedy" and modalities != 2:
        return False, "Greedy's MMTM exchange and utilisation rates are defined for exactly two modalities"
    if entry.method == "mwam" and data["name"] == "mfeat":
        return False, "MWAM's frequency ratio metric needs image-shaped inputs (a block DCT); mfeat's views are vectors"
    return True, ""


def _spec(method: str, setting: str, recipe: str, seed: int, size: Size, arm: str) -> RunSpec:
    entry, s = METHODS[method], SETTINGS[setting]
    kwargs = dict(entry.kwargs)
    if entry.method == "btw":
        kwargs["uid_key"] = BTW_UID[s.data["name"]]
    train = {"epochs": size.epochs, "patience": size.patience, "batch_size": 64, **RECIPES[recipe]}
    measures: tuple = ("probe",) + ((CONDITIONS,) if s.conditions else ())
    return RunSpec(arm, entry.method, seed, dict(s.data), train, kwargs,
                   {"encoder": "mlp", "encoder_kwargs": dict(size.encoder_kwargs)}, size.subsample, None, measures)


def build_method(method: str, setting: str, splits: datasets.Splits, size: Size) -> registry.Method:
    """The method as the grid builds it for a setting (its encoders and options), on already loaded ``splits``."""
    spec = _spec(method, setting, size.recipes[0], 0, size, method)
    return registry.build(spec.method, splits, **spec.build, **spec.method_kwargs)


def cells(size: Size) -> list[tuple[str, str]]:
    """(method, setting) pairs that run, setting by setting."""
    return [(m, s) for s in size.settings for m in size.methods if applies(m, s)[0]]


def tuning_specs(size: Size) -> list[RunSpec]:
    """Seed 0 of every cell under every recipe."""
    return [_spec(m, s, r, 0, size, f"{m} | {s} | {r}") for m, s in cells(size) for r in size.recipes]


def choose(tuning: Sequence[Mapping], size: Size) -> dict[tuple[str, str], str]:
    """Per cell the recipe with the best seed-0 validation accuracy among the recipes whose run converged (all of
    them if none did; ties: the first in ``size.recipes``)."""
    by_arm = {r["arm"]: r for r in tuning}
    choice = {}
    for m, s in cells(size):
        tried = [(verdict.run_converged(by_arm[a]), records.validation_score(by_arm[a]), -i, r)
                 for i, r in enumerate(size.recipes) if (a := f"{m} | {s} | {r}") in by_arm]
        if tried:
            choice[(m, s)] = max(tried)[3]
    return choice


def final_specs(choice: Mapping[tuple[str, str], str], size: Size) -> list[RunSpec]:
    """Every seed of every tuned cell with its chosen recipe (seed 0 is its tuning run's record)."""
    return [_spec(m, s, r, seed, size, f"{m} | {s}") for (m, s), r in choice.items() for seed in size.seeds]


def fill(size: Size, chapter: str = "leaderboard", shard: tuple[int, int] | None = None, save: bool = True,
         processes: int | None = None, wait_s: float = 0.0, root: Path = records.RESULTS) -> records.Grid:
    """Tune every cell, then train the chosen recipe on every seed; one grid of all the records.

    With ``shard=(i, n)`` this process trains its share of each stage; before the second stage it waits up
    to ``wait_s`` seconds for the other shards' tuning records, and goes on with the cells tuned by then
    (a later call fills the rest).  ``save=False`` (the smoke profile) writes nothing.
    """
    tuning = tuning_specs(size)
    first = records.run_grid(chapter, tuning, "cpu", processes, 1, shard, root, save)
    if shard is not None and save:
        deadline = time.monotonic() + wait_s
        while not all(_recorded(s, root) for s in tuning) and time.monotonic() < deadline:
            time.sleep(2)
        first = records.run_grid(chapter, [s for s in tuning if _recorded(s, root)], "cpu", processes, 1, None,
                                 root, save)  # every one of them is on disk: this loads, it trains nothing
    choice = choose(first.records, size)
    finals = final_specs(choice, size)
    if save:
        return records.run_grid(chapter, [*tuning, *finals], "cpu", processes, 1, shard, root, save)
    rest = records.run_grid(chapter, [s for s in finals if s.seed != 0], "cpu", processes, 1, None, root, False)
    by_arm = {r["arm"]: r for r in first.records}
    zero = [{**by_arm[f"{m} | {s} | {r}"], "arm": f"{m} | {s}"} for (m, s), r in choice.items()]
    return records.Grid(chapter, [*first.records, *zero, *rest.records], first.loaded + rest.loaded,
                        first.computed + rest.computed, [])


def _recorded(spec: RunSpec, root: Path) -> bool:
    return any(root.glob(f"*/*-{records.key(spec, 'cpu')}.json"))


def split_arm(arm: str) -> tuple[str, str, str | None]:
    parts = arm.split(" | ")
    return parts[0], parts[1], parts[2] if len(parts) > 2 else None


def final_records(grid_records: Sequence[Mapping]) -> list[Mapping]:
    """The records of the chosen recipes (the tuning records of other recipes left out)."""
    return [r for r in grid_records if split_arm(r["arm"])[2] is None]


def recipes_chosen(grid_records: Sequence[Mapping]) -> pd.DataFrame:
    """Method x setting: the chosen recipe (read from the seed-0 record's training config)."""
    rows = []
    for r in final_records(grid_records):
        if r["seed"] == 0:
            m, s, _ = split_arm(r["arm"])
            t = r["spec"]["train"]
            rows.append({"method": m, "setting": s, "recipe": next(k for k, v in RECIPES.items()
                                                                    if all(t.get(a) == b for a, b in v.items()))})
    return pd.DataFrame(rows).pivot(index="method", columns="setting", values="recipe")


def compute(grid_records: Sequence[Mapping]) -> pd.DataFrame:
    """The grid's cost per method: distinct runs (a chosen recipe's seed-0 run is in a grid twice, once per label),
    the median CPU seconds of a run, and the CPU and wall hours they took; the last row is the whole grid."""
    runs = {r["key"]: r for r in grid_records}.values()
    rows = [{"method": split_arm(r["arm"])[0], "cpu": r["cpu_time"], "wall": r["wall_time"]} for r in runs]
    frame = pd.DataFrame(rows, columns=["method", "cpu", "wall"])
    per = frame.groupby("method", sort=False).agg(runs=("cpu", "size"), cpu_s_per_run=("cpu", "median"),
                                                  cpu_h=("cpu", "sum"), wall_h=("wall", "sum"))
    total = pd.DataFrame({"runs": [len(frame)], "cpu_s_per_run": [frame["cpu"].median()],
                          "cpu_h": [frame["cpu"].sum()], "wall_h": [frame["wall"].sum()]}, index=["the grid"])
    out = pd.concat([per, total])
    out[["cpu_h", "wall_h"]] /= 3600
    out.columns = ["runs", "CPU s per run (median)", "CPU time (h)", "wall time of the runs (h)"]
    return out.round({"CPU s per run (median)": 1, "CPU time (h)": 3, "wall time of the runs (h)": 3})


def convergence(grid_records: Sequence[Mapping]) -> pd.DataFrame:
    """Per cell (final runs): runs, how many converged (``verdict.run_converged``), the most epochs a run took and
    its cap; sorted with the cells that have an unconverged run first."""
    rows = []
    for r in final_records(grid_records):
        m, s, _ = split_arm(r["arm"])
        rows.append({"method": m, "setting": s, "converged": verdict.run_converged(r), "epochs": r["epochs"],
                     "cap": r["spec"]["train"]["epochs"]})
    frame = pd.DataFrame(rows, columns=["method", "setting", "converged", "epochs", "cap"])
    out = frame.groupby(["method", "setting"], sort=False).agg(runs=("converged", "size"), converged=("converged", "sum"),
                                                               most_epochs=("epochs", "max"), cap=("cap", "max"))
    out["all converged"] = out["converged"] == out["runs"]
    return out.sort_values("all converged", kind="stable")


def plan(size: Size, seconds: Mapping[str, float]) -> pd.DataFrame:
    """The grid's plan before it runs: per method its runs (cells x (recipes + seeds - 1): the chosen recipe's seed
    0 is its tuning run) times ``seconds`` per run (e.g. measured by ``compute`` on an earlier grid)."""
    per_cell = len(size.recipes) + len(size.seeds) - 1
    counts = pd.Series([m for m, _ in cells(size)]).value_counts().reindex(size.methods).fillna(0).astype(int)
    frame = pd.DataFrame({"runs": counts * per_cell, "s per run": pd.Series(seconds).reindex(size.methods)})
    frame["CPU h"] = frame["runs"] * frame["s per run"] / 3600
    frame.loc["the grid"] = [frame["runs"].sum(), np.nan, frame["CPU h"].sum()]
    return frame.round({"s per run": 1, "CPU h": 3})


# ---- tables ----------------------------------------------------------------------------------------------------

def columns(settings: Sequence[str]) -> list[tuple[str, str, str]]:
    """The main table's columns: (column, setting whose records it reads, metric)."""
    out = [(s, s, "accuracy") for s in settings]
    if "AV-Digits" in settings:
        out += [(name, "AV-Digits", metric) for name, metric in TEST_CONDITIONS.items()]
    return out


def arms(grid_records: Sequence[Mapping]) -> dict[str, verdict.Arm]:
    """The verdict module's arms of the final records, named ``"<method> | <setting>"``."""
    return verdict.arms_from_records(final_records(grid_records))


def cell(all_arms: Mapping[str, verdict.Arm], method: str, setting: str, metric: str,
         level: float = 1 - verdict.ALPHA) -> dict[str, Any]:
    """One cell: mean, paired effect over joint with its interval, seeds, and whether every run converged."""
    name, base = f"{method} | {setting}", f"joint | {setting}"
    if name not in all_arms:
        return {"method": method, "mean": np.nan, "effect": np.nan, "low": np.nan, "high": np.nan, "seeds": 0,
                "converged": True, "applies": False}
    arm = all_arms[name]
    out = {"method": method, "mean": float(arm.take(metric, arm.seeds).mean()), "seeds": len(arm.seeds),
           "converged": all(arm.converged) and all(all_arms[base].converged), "applies": True}
    cmp = None if method == "joint" else paired(all_arms, name, base, metric, level)
    if cmp is None:
        return {**out, "effect": np.nan, "low": np.nan, "high": np.nan}
    return {**out, "effect": cmp.effect, "low": cmp.low, "high": cmp.high}


def long_table(grid_records: Sequence[Mapping], settings: Sequence[str], methods: Sequence[str]) -> pd.DataFrame:
    """One row per (method, column): mean, effect over joint with a 95% interval, converged, applies."""
    all_arms = arms(grid_records)
    rows = [{"column": col, **cell(all_arms, m, s, metric)} for col, s, metric in columns(settings) for m in methods]
    return pd.DataFrame(rows)


def fmt_cell(row: Mapping, scale: float = 100.0) -> str:
    """'97.1' for joint, '+1.1 [+0.1, +2.2]' (points over joint) otherwise; marks cells that do not apply or
    did not converge."""
    if not row["applies"]:
        return "does not apply"
    if not row["converged"]:
        return "not converged"
    if row["method"] == "joint":
        return f"{scale * row['mean']:.1f}"
    if not np.isfinite(row["effect"]):
        return f"{scale * row['mean']:.1f}"
    return f"{scale * row['effect']:+.1f} [{scale * row['low']:+.1f}, {scale * row['high']:+.1f}]"


def main_table(long: pd.DataFrame) -> pd.DataFrame:
    """Method x column: joint's accuracy (%), every other method's gain over joint in points [95% interval]."""
    shown = long.assign(text=[fmt_cell(r) for _, r in long.iterrows()])
    order = list(dict.fromkeys(long["column"]))
    return shown.pivot(index="method", columns="column", values="text")[order].reindex(list(dict.fromkeys(long["method"])))


def metric_table(grid_records: Sequence[Mapping], setting: str, metrics: Sequence[str]) -> pd.DataFrame:
    """Method x metric on one setting: the mean over seeds (%), e.g. macro-F1, ECE, probes, corruption families."""
    rows = {}
    for r in final_records(grid_records):
        m, s, _ = split_arm(r["arm"])
        if s == setting:
            rows.setdefault(m, []).append({k: r["metrics"].get(k, np.nan) for k in metrics})
    return pd.DataFrame({m: pd.DataFrame(v).mean() for m, v in rows.items()}).T.mul(100).round(1)


# ---- the aggregate ---------------------------------------------------------------------------------------------

def _run_scores(grid_records: Sequence[Mapping], setting: str, metric: str) -> dict[str, np.ndarray]:
    """Per method on one setting (or test condition): every seed's score (mean over test items)."""
    out: dict[str, list] = {}
    for r in sorted(final_records(grid_records), key=lambda r: r["seed"]):
        m, s, _ = split_arm(r["arm"])
        if s == setting and metric in r["metrics"]:
            out.setdefault(m, []).append(r["metrics"][metric])
    return {m: np.asarray(v, dtype=float) for m, v in out.items()}


def beats(a: np.ndarray, b: np.ndarray) -> float:
    """P(a run of ``a`` scores above a run of ``b``), ties counting half, over all pairs of runs."""
    diff = np.subtract.outer(np.asarray(a), np.asarray(b))
    return float(np.mean((diff > 0) + 0.5 * (diff == 0)))


def aggregate(grid_records: Sequence[Mapping], settings: Sequence[str], methods: Sequence[str],
              resamples: int = 2000, seed: int = 0, level: float = 0.95) -> pd.DataFrame:
    """Per method: the probability of beating joint, averaged over the columns it runs in, with a stratified
    percentile bootstrap interval (each column's runs of each arm resampled separately), and how many columns."""
    groups = [(s, metric) for _, s, metric in columns(settings)]
    scored = [_run_scores(grid_records, s, metric) for s, metric in groups]
    rows = []
    for m in methods:
        if m == "joint":
            continue
        samples = [x for sc in scored if m in sc and "joint" in sc for x in (sc[m], sc["joint"])]
        if not samples:
            continue
        point = _mean_beats(*samples)
        if all(len(x) > 1 for x in samples):
            ci = stats.bootstrap(samples, _mean_beats, paired=False, vectorized=False, n_resamples=resamples,
                                 confidence_level=level, method="percentile", random_state=seed).confidence_interval
            low, high = ci.low, ci.high
        else:
            low = high = np.nan
        rows.append({"method": m, "P(beats joint)": point, "low": low, "high": high, "columns": len(samples) // 2})
    return pd.DataFrame(rows).sort_values("P(beats joint)", ascending=False).set_index("method")


def _mean_beats(*samples: np.ndarray) -> float:
    return float(np.mean([beats(samples[i], samples[i + 1]) for i in range(0, len(samples), 2)]))


# ---- cost ------------------------------------------------------------------------------------------------------

#: the per-step cost measurement (``benchmarks/step_time.py --leaderboard``): every method timed in one process
STEP_TIME = records.RESULTS / "step_time_leaderboard.json"
#: the settings that share an input shape with a timed one
SAME_SHAPE = {"held-out speakers": "AV-Digits", "image degraded": "AV-Digits"}


def step_time(path: Path = STEP_TIME, settings: Sequence[str] | None = None) -> pd.DataFrame:
    """Method x setting: a training step's time over joint training's, measured in one process on the same batches
    in interleaved rounds (the median of the per-round ratios; ``benchmarks/step_time.py --leaderboard``); settings
    sharing an input shape get its timing."""
    found = results.read_json(path)
    t = pd.DataFrame(found["results"]).pivot(index="method", columns="setting", values="relative_to_joint")
    for setting, shape in SAME_SHAPE.items():
        if shape in t.columns:
            t[setting] = t[shape]
    order = [m for m in METHODS if m in t.index]
    return t.loc[order, [s for s in (settings or t.columns) if s in t.columns]]


def step_time_source(path: Path = STEP_TIME) -> str:
    """The command, device, CPU time and load under which the step times were measured."""
    found = results.read_json(path)
    load = ", ".join(f"{x:.1f}" for x in found["load_average_1_5_15_min"])
    return (f"`{found['command']}` on {found['device']} ({found['time']}, load average {load}; "
            f"{found['cpu_seconds']:.0f} CPU s)")


class _Counter:
    """Counts training-mode forward calls of every encoder, sub-models' included."""

    def __init__(self):
        self.kinds, self.calls = (MLPEncoder, ResNet18Encoder, SmallCNN), 0
        self.handle = torch.nn.modules.module.register_module_forward_hook(self._hook)

    def _hook(self, module, inputs, output) -> None:
        if module.training and isinstance(module, self.kinds):
            self.calls += 1

    def close(self) -> None:
        self.handle.remove()


def cost(methods: Sequence[str], setting: str = "AV-Digits", subsample: int = 256, epochs: int = 3) -> pd.DataFrame:
    """Per method on one setting: parameters, parameters beyond joint's, and encoder passes per training step
    (every encoder forward in training mode, sub-models trained inside the fit included, over the main model's
    steps and modalities)."""
    if subsample % 64:
        raise ValueError(f"subsample must be a multiple of the batch size 64, got {subsample}")
    splits = datasets.load(**SETTINGS[setting].data).subsample_train(subsample)
    steps = subsample // 64 * epochs
    rows = []
    for m in methods:
        spec = _spec(m, setting, "Adam 1e-3", 0, Size((setting,), ("joint",), ("Adam 1e-3",), (0, 1), epochs, None), m)
        seed_everything(0)
        method = registry.build(spec.method, splits, **spec.build, **spec.method_kwargs)
        params = sum(p.numel() for p in method.parameters())
        counter = _Counter()
        try:
            fit(method, splits, TrainConfig(epochs=epochs, batch_size=64, device="cpu", progress=False), seed=0)
        finally:
            counter.close()
        passes = counter.calls / (steps * len(splits.modalities))
        rows.append({"method": m, "parameters": params, "passes per step": round(passes, 2)})
    t = pd.DataFrame(rows).set_index("method")
    t["extra parameters"] = t["parameters"] - t.loc["joint", "parameters"]
    return t[["parameters", "extra parameters", "passes per step"]]


# ---- the reader's summaries --------------------------------------------------------------------------------------

def which_method_when(long: pd.DataFrame) -> str:
    """Markdown bullets per column: methods whose interval lies above joint (best first), or joint stands."""
    lines = []
    for col, part in long.groupby("column", sort=False):
        ok = part[part["applies"] & part["converged"] & (part["method"] != "joint")]
        better = ok[ok["low"] > 0].sort_values("effect", ascending=False)
        worse = ok[ok["high"] < 0]
        base = part.loc[part["method"] == "joint", "mean"].iloc[0]
        if len(better):
            names = ", ".join(f"{r.method} ({100 * r.effect:+.1f})" for r in better.itertuples())
            text = f"**{col}** (joint {100 * base:.1f}%): {names} beat joint training, interval above zero."
        else:
            text = f"**{col}** (joint {100 * base:.1f}%): no method beats joint training clearly; keep joint training."
        if len(worse):
            text += f" Worse than joint: {', '.join(worse['method'])}."
        lines.append(f"- {text}")
    return "\n".join(lines)


def figure(agg: pd.DataFrame, ratio: pd.Series):
    """P(beats joint) with its interval against the median step-time ratio, one labelled point per method."""
    frame = agg.join(ratio.rename("ratio"), how="inner").reset_index()
    ax = plots.scatter(frame, "ratio", "P(beats joint)", title="Gain over joint training against cost",
                       xlabel="training step time / joint's (median over settings)",
                       ylabel="P(a run beats a joint run)")
    ax.errorbar(frame["ratio"], frame["P(beats joint)"],
                yerr=[frame["P(beats joint)"] - frame["low"], frame["high"] - frame["P(beats joint)"]],
                fmt="none", ecolor="grey", alpha=0.6, lw=1)
    for _, r in frame.iterrows():
        ax.annotate(r["method"], (r["ratio"], r["P(beats joint)"]), fontsize=7, xytext=(3, 3), textcoords="offset points")
    ax.axhline(0.5, color="black", lw=0.8, ls="--")
    ax.set_xscale("log")
    return ax


# ---- agreement with the chapters ------------------------------------------------------------------------------

#: the leaderboard's smallest effect that matters: one point of accuracy (a smaller gain would not change which
#: method a reader picks)
DELTA = 0.01


def _udml_delta() -> float:
    return udml_analysis.reported_deltas(results.reported("udml"))["noisy"]


def _benchmark_delta() -> float:
    rep = results.reported("benchmark").set_index(["dataset", "method", "metric"])["value"]
    return float(rep[("CREMA-D", "OGM", "accuracy")] - rep[("CREMA-D", "joint", "accuracy")]) / 200


def _mwam_delta() -> float:
    rep = results.reported("mwam")
    rep = rep[rep.dataset == "CASIA-SURF"].set_index(["setting", "method", "metric"])["value"]
    return float(rep[("Average", "MMANet+MWAM (gradient)", "accuracy")] - rep[("Average", "MMANet", "accuracy")]) / 200


def _mwam_evidence(grid_records: Sequence[Mapping]) -> dict[str, verdict.Arm]:
    return mwam_analysis.with_subset_scores(verdict.arms_from_records(grid_records))


def _iibalance_evidence(grid_records: Sequence[Mapping]) -> dict[str, verdict.Arm]:
    """The IIBalance page's arms: its default setting's records are stored under their bare names (``"joint"``)."""
    return verdict.arms_from_records(grid_records, lambda r: r["arm"] if ": " in r["arm"] else f"default: {r['arm']}")


def _mwam_arm(name: str) -> str:
    return mwam_analysis.arm(mwam_analysis.MAIN, name)


@dataclass(frozen=True)
class Counterpart:
    """A chapter's claim (its records folder, arms, metric and ``delta``, each as the chapter's page declares it)
    and the leaderboard comparison that tests the same idea."""

    claim: str
    chapter: str
    treatment: str
    control: str
    metric: str
    delta: Any  # a number, or a function of nothing that derives it as the chapter does (from reported numbers)
    board: tuple[str, str, str]  # leaderboard treatment arm, control arm, metric
    evidence: Any = None  # records -> arms, where the chapter derives its metric (None: verdict.arms_from_records)


COUNTERPARTS = (
    Counterpart("UDML beats the same recipe with static weights, mixed per-sample noise", "udml", "UDML",
                "static recipe", "accuracy_mixed", _udml_delta, ("UDML | AV-Digits", "joint | AV-Digits", "acc_mixed")),
    Counterpart("UDML beats EAU (official form), mixed per-sample noise", "udml", "UDML", "EAU", "accuracy_mixed",
                _udml_delta, ("UDML | AV-Digits", "EAU | AV-Digits", "acc_mixed")),
    Counterpart("IIBalance improves the fused model over joint training (default)", "iibalance", "default: IIBalance",
                "default: joint", "accuracy", 0.01, ("IIBalance | AV-Digits", "joint | AV-Digits", "accuracy"),
                _iibalance_evidence),
    Counterpart("OGM-GE improves the fused model over joint training", "benchmark", "OGM-GE", "joint", "accuracy",
                _benchmark_delta, ("OGM-GE | AV-Digits", "joint | AV-Digits", "accuracy")),
    Counterpart("MWAM raises the Average over subsets (late host)", "mwam", "late + MWAM", "late host", "average",
                _mwam_delta, ("MWAM | AV-Digits", "joint | AV-Digits", "acc_missing"), _mwam_evidence),
)


def chapter_records(chapter: str, root: Path = records.RESULTS) -> list[dict]:
    """Every run record a chapter committed (its results folder)."""
    return [records.read(p) for p in sorted((root / chapter).glob("*.json"))]


def _judged(name: str, metric: str, treatment: str, control: str, delta: float, arms_: Mapping) -> dict:
    if treatment not in arms_ or control not in arms_:
        return {"effect": np.nan, "low": np.nan, "high": np.nan, "seeds": 0, "outcome": "no records"}
    claim = verdict.Claim(name, metric, treatment, control, delta, "as the page declares it")
    row = verdict.judge([claim], {k: arms_[k] for k in (treatment, control)}).iloc[0]
    return {k: row[k] for k in ("effect", "low", "high", "seeds", "outcome")}


def agreement(grid_records: Sequence[Mapping], counterparts: Sequence[Counterpart] = COUNTERPARTS,
              root: Path = records.RESULTS) -> pd.DataFrame:
    """Each chapter verdict that has a leaderboard counterpart: the page's own verdict (its saved table), the claim
    re-derived from the chapter's committed records, and the leaderboard's comparison: effect [95% interval] and
    outcome on both sides (one claim at a time, no preconditions and no multiplicity correction on either side),
    and whether those two outcomes agree."""
    board = arms(grid_records)
    rows = []
    for c in counterparts:
        found = chapter_records(c.chapter, root)
        own = (c.evidence or verdict.arms_from_records)(found) if found else {}
        arm_name = _mwam_arm if c.chapter == "mwam" else (lambda a: a)
        delta = c.delta() if callable(c.delta) else c.delta
        ch = _judged(c.claim, c.metric, arm_name(c.treatment), arm_name(c.control), delta, own)
        t, k, metric = c.board
        lb_row = _judged(c.claim, metric, t, k, DELTA, board)
        page = records.read_verdicts(c.chapter, root)
        if c.claim not in page.index:
            raise KeyError(f"chapter {c.chapter!r} saved no verdict for {c.claim!r}; its claims: {list(page.index)}")
        rows.append({"chapter": c.chapter, "claim": c.claim, "the page's verdict": page.loc[c.claim, "outcome"],
                     "chapter delta (points)": round(100 * delta, 2),
                     "chapter effect": verdict.fmt_interval(ch), "chapter seeds": ch["seeds"],
                     "chapter, judged alone": ch["outcome"],
                     "leaderboard comparison": f"{t.split(' | ')[0]} vs {k.split(' | ')[0]}, {metric} ({t.split(' | ')[1]})",
                     "leaderboard effect": verdict.fmt_interval(lb_row), "leaderboard seeds": lb_row["seeds"],
                     "leaderboard, judged alone": lb_row["outcome"], "agree": ch["outcome"] == lb_row["outcome"]})
    return pd.DataFrame(rows).set_index("claim")


def main(argv: Sequence[str] | None = None) -> int:
    """Fill the grid from the command line; on a cluster each process takes its shard (``--shard i/n``, or the
    launcher's rank from ``torchrun`` / a SLURM array job)."""
    import argparse
    parser = argparse.ArgumentParser(prog="python -m mmrepro.analysis.leaderboard", description=main.__doc__.split(";")[0])
    parser.add_argument("--profile", default="book", choices=profiles.PROFILES)
    parser.add_argument("--settings", nargs="*", choices=list(SETTINGS), help="default: the profile's settings")
    parser.add_argument("--methods", nargs="*", choices=list(METHODS), help="default: the profile's methods")
    parser.add_argument("--skip", nargs="*", default=(), choices=list(METHODS),
                        help=f"methods to leave for a later call (e.g. {' '.join(LAST)}, trained last)")
    parser.add_argument("--processes", type=int, default=None, help="worker processes of this process")
    parser.add_argument("--shard", default=None, help="i/n: train the missing runs at positions i modulo n")
    parser.add_argument("--wait", type=float, default=3600.0, help="seconds to wait for other shards' tuning runs")
    args = parser.parse_args(argv)
    shard = tuple(int(x) for x in args.shard.split("/")) if args.shard else records.shard_from_env()
    size = size_for(args.profile, args.settings, methods=args.methods)
    size = replace(size, methods=tuple(m for m in size.methods if m == "joint" or m not in args.skip))
    grid = fill(size, shard=shard, processes=args.processes, wait_s=args.wait)
    print(grid.provenance().to_string(), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
