"""One rule for every verdict of the book: claims declared first, arms paired by seed, intervals, outcomes.

A claim compares a *treatment* arm with a *control* arm on one metric, in a declared direction, against a
smallest effect of interest ``delta``.  The effect is the mean paired difference (treatment − control, signed
so that the claimed direction is positive) over seeds and, for per-item metrics, test items.  Its interval is a
t-interval whose variance comes from a crossed random-effects model (seed × item, ANOVA estimators), so it
covers the seed noise *and* the test-item sampling noise of a fixed test set; its degrees of freedom come from
Satterthwaite's formula.  The family-wise error over a chapter's claims is controlled by Bonferroni: each
interval has level ``1 − alpha / m`` for ``m`` judged claims, so all ``m`` intervals hold together with
probability at least ``1 − alpha``.

Outcomes: **reproduced** (interval above ``delta``), **not reproduced** (interval below ``delta``),
**inconclusive** (straddles it; with the seeds that would settle it), **not judged** (an arm did not converge,
or fewer than two seeds), **not testable here** (a precondition failed), and **sanity check** rows that verify
a mechanism by construction and are never counted in the family.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable, Literal, Mapping, Sequence

import numpy as np
import pandas as pd
from scipy import stats

ALPHA = 0.05
Outcome = Literal["reproduced", "not reproduced", "inconclusive", "not judged", "not testable here",
                  "sanity check: holds", "sanity check: fails", "smoke run"]
KINDS = ("claim", "sanity")
MAX_SEEDS = 100  # beyond this many seeds the "seeds needed" estimate is reported as "> MAX_SEEDS"
CONVERGENCE_RULE = ("its best validation epoch lies before the last fifth of its epochs, or its validation score "
                    "did not improve over its last `patience` epochs (early stopping)")


@dataclass(frozen=True)
class Claim:
    """A claim, declared before it is run: metric, direction, the two arms, and ``delta`` with its reason."""

    name: str
    metric: str
    treatment: str
    control: str | None  # None: the treatment's own paired score against zero (e.g. a within-run difference)
    delta: float
    delta_reason: str
    higher_is_better: bool = True
    kind: str = "claim"
    paper: str = ""

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"claim {self.name!r}: kind must be one of {KINDS}, got {self.kind!r}")
        if not math.isfinite(self.delta) or self.delta < 0:
            raise ValueError(f"claim {self.name!r}: delta must be a finite number >= 0, got {self.delta!r}")
        if self.treatment == self.control:
            raise ValueError(f"claim {self.name!r}: treatment and control are the same arm {self.treatment!r}")
        if not self.delta_reason:
            raise ValueError(f"claim {self.name!r}: delta needs a one-line reason (delta_reason)")


@dataclass(frozen=True)
class Comparison:
    """The paired effect with its interval and the variance components that made it."""

    effect: float
    low: float
    high: float
    level: float
    n_seeds: int
    n_items: int
    df: float
    var_seed: float  # between-seed variance of the paired difference
    var_item: float  # between-item variance (shared by all seeds: it does not shrink with more seeds)
    var_resid: float

    def half_width(self, n_seeds: int) -> float:
        """The interval's half-width had there been ``n_seeds`` seeds (same variance components)."""
        var = self.var_seed / n_seeds + self.var_item / self.n_items + self.var_resid / (n_seeds * self.n_items)
        return stats.t.ppf(1 - (1 - self.level) / 2, max(self.df, 1.0)) * math.sqrt(max(var, 0.0))


def _matrix(values: np.ndarray | Sequence) -> np.ndarray:
    """Scores as a (seeds, items) float matrix; a per-run scalar metric is one item per seed."""
    array = np.asarray(values, dtype=float)
    if array.ndim == 1:
        array = array[:, None]
    if array.ndim != 2 or array.size == 0:
        raise ValueError(f"scores must be (seeds,) or (seeds, items) with at least one value, got shape {array.shape}")
    if not np.all(np.isfinite(array)):
        raise ValueError("scores contain NaN or inf: a run diverged or a metric is undefined")
    return array


def _components(d: np.ndarray) -> tuple[float, float, float, float, float]:
    """Var(mean of d), its components and Satterthwaite df, from a crossed seed × item random-effects model.

    ANOVA estimators: Var(mean) = (MS_seed + MS_item − MS_resid) / (S·N), floored at MS_resid / (S·N); its
    degrees of freedom follow Satterthwaite's formula for that linear combination of mean squares.
    """
    s, n = d.shape
    grand, seed_means, item_means = d.mean(), d.mean(axis=1), d.mean(axis=0)
    ms_seed = n * np.sum((seed_means - grand) ** 2) / (s - 1)
    if n == 1:
        return ms_seed / s, ms_seed, 0.0, 0.0, float(s - 1)
    ms_item = s * np.sum((item_means - grand) ** 2) / (n - 1)
    resid = d - seed_means[:, None] - item_means[None, :] + grand
    ms_resid = np.sum(resid ** 2) / ((s - 1) * (n - 1))
    combo = ms_seed + ms_item - ms_resid
    den = ms_seed ** 2 / (s - 1) + ms_item ** 2 / (n - 1) + ms_resid ** 2 / ((s - 1) * (n - 1))
    df = combo ** 2 / den if den > 0 and combo > 0 else float(s - 1)
    var = max(combo, ms_resid) / (s * n)
    return var, max((ms_seed - ms_resid) / n, 0.0), max((ms_item - ms_resid) / s, 0.0), ms_resid, df


def compare(treatment: np.ndarray | Sequence, control: np.ndarray | Sequence, level: float = 1 - ALPHA,
            paired: bool = True) -> Comparison:
    """Effect treatment − control with a ``level`` t-interval covering seed and test-item noise.

    Both inputs are (seeds, items) per-item scores (or (seeds,) run-level values); row ``i`` of both is
    seed ``i``.  ``paired=False`` treats the arms' seeds as independent (for arms that share nothing).
    """
    t, c = _matrix(treatment), _matrix(control)
    if t.shape[1] != c.shape[1] or (paired and t.shape != c.shape):
        raise ValueError(f"arms must be scored on the same seeds and items: shapes {t.shape} and {c.shape}")
    if min(len(t), len(c)) < 2:
        raise ValueError("an interval needs at least two seeds per arm")
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1), got {level}")
    s, n = t.shape
    if paired:
        var, vs, vi, vr, df = _components(t - c)
    else:
        parts = [_components(x) for x in (t, c)]
        var, vs, vi, vr = (sum(p[k] for p in parts) for k in range(4))
        df = var ** 2 / sum(p[0] ** 2 / p[4] for p in parts)  # Welch-Satterthwaite across the two arms
    effect = float(t.mean() - c.mean())
    half = stats.t.ppf(1 - (1 - level) / 2, max(df, 1.0)) * math.sqrt(var)
    return Comparison(effect, effect - half, effect + half, level, s, n, df, vs, vi, vr)


def seeds_to_settle(cmp: Comparison, delta: float) -> str:
    """About how many seeds would put the interval clear of ``delta`` if the effect stayed where it is."""
    gap = abs(cmp.effect - delta)
    floor = stats.t.ppf(1 - (1 - cmp.level) / 2, max(cmp.df, 1.0)) * math.sqrt(cmp.var_item / cmp.n_items)
    if gap <= floor:
        return "more seeds alone cannot settle it (test-item noise): a larger test set is needed"
    for n in range(cmp.n_seeds + 1, MAX_SEEDS + 1):
        if cmp.half_width(n) < gap:
            return f"about {n} seeds"
    return f"more than {MAX_SEEDS} seeds"


def outcome(cmp: Comparison, delta: float) -> Outcome:
    """The one rule: above ``delta`` reproduced, below it not reproduced, otherwise inconclusive."""
    if cmp.low > delta:
        return "reproduced"
    if cmp.high < delta:
        return "not reproduced"
    return "inconclusive"


@dataclass
class Arm:
    """One arm's scores: per metric a (seeds, items) matrix; the seeds in row order; whether each converged."""

    seeds: list[int]
    scores: dict[str, np.ndarray]
    converged: list[bool] = field(default_factory=list)

    def take(self, metric: str, seeds: Sequence[int]) -> np.ndarray:
        if metric not in self.scores:
            raise KeyError(f"metric {metric!r} not recorded; available: {sorted(self.scores)}")
        rows = [self.seeds.index(s) for s in seeds]
        return _matrix(self.scores[metric])[rows]


Precondition = Mapping[str, tuple[bool, str]]  # claim name -> (holds, what was measured)


def judge(claims: Sequence[Claim], arms: Mapping[str, Arm], alpha: float = ALPHA,
          preconditions: Precondition | None = None, smoke: bool = False) -> pd.DataFrame:
    """The verdict table: one row per claim with effect, Bonferroni interval, outcome and what would settle it.

    Claims whose precondition fails are "not testable here"; claims on an arm with an unconverged run are
    "not judged"; the family size ``m`` counts only the claims actually judged.
    """
    _check_claims(claims, arms)
    preconditions = preconditions or {}
    status = {c.name: _status(c, arms, preconditions, smoke) for c in claims}
    family = [c for c in claims if c.kind == "claim" and status[c.name] is None]
    level = 1 - alpha / max(len(family), 1)
    rows = [_row(c, arms, status[c.name], level if c.kind == "claim" else 1 - alpha, len(family)) for c in claims]
    return pd.DataFrame(rows).set_index("claim")


def _check_claims(claims: Sequence[Claim], arms: Mapping[str, Arm]) -> None:
    names = [c.name for c in claims]
    if len(set(names)) != len(names):
        raise ValueError(f"claim names must be unique, got {names}")
    for c in claims:
        for arm in _arms_of(c):
            if arm not in arms:
                raise KeyError(f"claim {c.name!r} names arm {arm!r}; recorded arms: {sorted(arms)}")


def _status(c: Claim, arms: Mapping[str, Arm], preconditions: Precondition, smoke: bool) -> str | None:
    """Why a claim is not judged (or None when it is)."""
    if smoke:
        return "smoke run"
    holds, measured = preconditions.get(c.name, (True, ""))
    if not holds:
        return f"not testable here: {measured}" if measured else "not testable here"
    for arm in _arms_of(c):
        if not all(arms[arm].converged):
            bad = sum(not x for x in arms[arm].converged)
            return f"not judged: arm {arm!r} did not converge ({bad} of {len(arms[arm].converged)} runs)"
    if len(_shared_seeds(c, arms)) < 2:
        return "not judged: fewer than two shared seeds"
    return None


def _arms_of(c: Claim) -> tuple[str, ...]:
    return (c.treatment,) if c.control is None else (c.treatment, c.control)


def _shared_seeds(c: Claim, arms: Mapping[str, Arm]) -> list[int]:
    return [s for s in arms[c.treatment].seeds if all(s in arms[a].seeds for a in _arms_of(c))]


def _scores(c: Claim, arms: Mapping[str, Arm], seeds: list[int]) -> tuple[np.ndarray, np.ndarray]:
    """(treatment, control) score matrices on the shared seeds, signed so the claimed direction is positive."""
    sign = 1.0 if c.higher_is_better else -1.0
    t = sign * arms[c.treatment].take(c.metric, seeds)
    return t, (np.zeros_like(t) if c.control is None else sign * arms[c.control].take(c.metric, seeds))


def _row(c: Claim, arms: Mapping[str, Arm], status: str | None, level: float, m: int) -> dict:
    against = "zero" if c.control is None else c.control
    row = {"claim": c.name, "paper evidence": c.paper, "metric": c.metric, "comparison": f"{c.treatment} vs {against}",
           "delta": c.delta, "delta reason": c.delta_reason}
    seeds = _shared_seeds(c, arms)
    if len(seeds) >= 2:
        cmp = compare(*_scores(c, arms, seeds), level)
        row.update(effect=cmp.effect, low=cmp.low, high=cmp.high, level=level, seeds=cmp.n_seeds, items=cmp.n_items)
    else:
        cmp = None
        row.update(effect=float("nan"), low=float("nan"), high=float("nan"), level=level, seeds=len(seeds), items=0)
    if status is not None:
        row.update(outcome=status.split(":")[0], note=status, settle="")
    elif c.kind == "sanity":
        holds = cmp.low > c.delta
        row.update(outcome="sanity check: holds" if holds else "sanity check: fails",
                   note="a mechanism that holds by construction; not counted in the family", settle="")
    else:
        result = outcome(cmp, c.delta)
        row.update(outcome=result, note=f"one of {m} claims (Bonferroni, interval level {level:.4f})",
                   settle=seeds_to_settle(cmp, c.delta) if result == "inconclusive" else "")
    return row


def arms_from_records(records: Sequence[Mapping], arm_of: Callable[[Mapping], str] = lambda r: r["arm"]) -> dict[str, Arm]:
    """Group run records into arms: per-item scores (``items``) and run-level ``metrics`` by seed."""
    grouped: dict[str, list[Mapping]] = {}
    for record in records:
        grouped.setdefault(arm_of(record), []).append(record)
    arms = {}
    for name, runs in grouped.items():
        runs = sorted(runs, key=lambda r: r["seed"])
        seeds = [r["seed"] for r in runs]
        if len(set(seeds)) != len(seeds):
            raise ValueError(f"arm {name!r} has two records for one seed: {seeds}")
        metrics = set.intersection(*(set(r["items"]) | set(r["metrics"]) for r in runs))
        scores = {m: np.array([r["items"][m] if m in r["items"] else r["metrics"][m] for r in runs], dtype=float)
                  for m in metrics if all(_numeric(r, m) for r in runs)}
        arms[name] = Arm(seeds, scores, [run_converged(r) for r in runs])
    return arms


def run_converged(record: Mapping) -> bool:
    """Whether a run record converged by ``CONVERGENCE_RULE`` (the record's own flag is the first half of it)."""
    patience = record["spec"]["train"].get("patience")
    stalled = patience is not None and record["epochs"] - 1 - record["best_epoch"] >= patience
    return bool(record["converged"]) or stalled


def _numeric(record: Mapping, metric: str) -> bool:
    value = record["items"].get(metric, record["metrics"].get(metric))
    return isinstance(value, (int, float, list)) and not isinstance(value, bool)


def simulate_scores(rng: np.random.Generator, seeds: int = 5, items: int = 300, effect: float = 0.0,
                    seed_sd: float = 0.3, arm_sd: float = 0.07, interaction_sd: float = 0.8) -> tuple[np.ndarray, np.ndarray]:
    """Per-item correctness (0/1) of two arms that share seeds (paired) and one fixed test set, for checking the rule.

    Each item has a difficulty and an arm-by-item interaction ±w/2 (symmetric, so with ``effect = 0`` the two
    arms have exactly the same expected accuracy over the item population); each seed shifts both arms alike
    (what pairing removes) plus a little noise of its own; ``effect`` shifts the treatment's logits.
    """
    difficulty = rng.normal(1.2, 1.2, items)
    w = rng.normal(0, interaction_sd, items)
    shared = rng.normal(0, seed_sd, (seeds, 1))
    logits = [difficulty + sign * w / 2 + shared + rng.normal(0, arm_sd, (seeds, 1)) + (effect if sign > 0 else 0.0)
              for sign in (1, -1)]
    return tuple((rng.random((seeds, items)) < 1 / (1 + np.exp(-x))).astype(float) for x in logits)


def power(rng: np.random.Generator, seeds: int, delta: float, effect: float, m: int, runs: int = 150,
          **noise: float) -> float:
    """Share of simulated comparisons, in a family of ``m``, that a true logit shift ``effect`` is judged reproduced."""
    level = 1 - ALPHA / m
    return float(np.mean([outcome(compare(*simulate_scores(rng, seeds, effect=effect, **noise), level=level), delta)
                          == "reproduced" for _ in range(runs)]))


def fmt_interval(row: Mapping, scale: float = 100.0, digits: int = 1) -> str:
    """'+4.0 [+1.2, +6.8]' in the metric's units times ``scale`` (percentage points by default)."""
    if not math.isfinite(row["effect"]):
        return "—"
    f = f"{{:+.{digits}f}}"
    return f"{f.format(scale * row['effect'])} [{f.format(scale * row['low'])}, {f.format(scale * row['high'])}]"


def table(verdicts: pd.DataFrame, scale: float = 100.0, unit: str = "points") -> pd.DataFrame:
    """The verdict table as the book shows it: claim, paper evidence, our evidence, outcome, what would settle it."""
    ours = [f"{fmt_interval(r, scale)} {unit} ({r['comparison']}, {r['metric']}, {r['seeds']} seeds; "
            f"delta {scale * r['delta']:.1f})" for _, r in verdicts.iterrows()]
    shown = verdicts["outcome"].where(~verdicts["outcome"].isin(["not judged", "not testable here"]), verdicts["note"])
    return pd.DataFrame({"paper evidence": verdicts["paper evidence"], "our evidence": ours, "verdict": shown,
                         "what would settle it": verdicts["settle"].replace("", "—")}, index=verdicts.index)


def summary(verdicts: pd.DataFrame) -> str:
    """'What this chapter showed', generated from the verdict table."""
    groups = {k: list(v.index) for k, v in verdicts.groupby("outcome", sort=False)}
    order = ["reproduced", "not reproduced", "inconclusive", "not judged", "not testable here",
             "sanity check: holds", "sanity check: fails", "smoke run"]
    parts = []
    for key in order:
        if key in groups:
            names = "; ".join(groups[key])
            parts.append(f"**{key}** ({len(groups[key])}): {names}.")
    m = int(((verdicts["outcome"].isin(["reproduced", "not reproduced", "inconclusive"]))).sum())
    parts.append(f"The family-wise error over the {m} judged claims is held at {ALPHA:.0%} (Bonferroni).")
    return " ".join(parts)
