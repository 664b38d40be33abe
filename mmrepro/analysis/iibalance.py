"""The IIBalance chapter's analysis of its run records: the build of each arm, the choice of MMPareto's learning
rate on validation, per-class views of the complementary-cues setting, and the claims' preconditions.

Every function reads records (dicts as ``mmrepro.records`` writes them) or verdict tables; none trains.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import pandas as pd

from ..records import validation_score


def build_options(setting_data: Mapping[str, Any], method: str, kwargs: Mapping[str, Any],
                  encoder: str) -> tuple[dict, dict]:
    """(build options, method options) of one arm: a summed linear head per modality for every method but Greedy
    (its own late-fusion network), ``encoder`` on AV-Digits and MLP encoders on mfeat's feature vectors."""
    if "name" not in setting_data:
        raise ValueError(f"setting data must name a dataset, got {dict(setting_data)}")
    build = {"encoder": "mlp" if setting_data["name"] == "mfeat" else encoder}
    if method == "unimodal":
        if "modality" not in kwargs:
            raise ValueError("a unimodal arm needs kwargs={'modality': ...}")
        return {**build, "modality": kwargs["modality"]}, {}
    return ({**build, "fusion": "sum"} if method != "greedy" else build), dict(kwargs)


def select_on_validation(records: Sequence[Mapping[str, Any]],
                         candidates: Mapping[str, Sequence[str]]) -> tuple[list[dict], pd.DataFrame]:
    """For each ``{target arm: candidate arms}``, the candidate with the highest mean validation accuracy over
    seeds (its selected epochs; ties go to the first listed): its records relabelled as the target arm, and a
    table of every candidate's mean validation accuracy and which one was chosen. Test scores play no part."""
    out: list[dict] = []
    rows = []
    for target, names in candidates.items():
        if not names:
            raise ValueError(f"no candidate arms for {target!r}")
        means = {}
        for name in names:
            runs = [r for r in records if r["arm"] == name]
            if not runs:
                raise KeyError(f"no records of candidate arm {name!r}")
            means[name] = sum(validation_score(r) for r in runs) / len(runs)
        chosen = max(names, key=lambda n: means[n])
        out += [{**r, "arm": target} for r in records if r["arm"] == chosen]
        rows += [{"arm": target, "candidate": n, "mean validation accuracy": means[n], "chosen": n == chosen}
                 for n in names]
    return out, pd.DataFrame(rows)


def class_view(records: Sequence[Mapping[str, Any]], arms: Mapping[str, str], classes: Sequence[int],
               metrics: Sequence[str] = ("accuracy",)) -> list[dict]:
    """Derived records ``{new arm: source arm}`` whose per-item ``metrics`` keep only the test items whose label is
    in ``classes`` (run-level metrics are dropped, so only the restricted scores can be judged)."""
    keep = set(int(c) for c in classes)
    out = []
    for new, source in arms.items():
        runs = [r for r in records if r["arm"] == source]
        if not runs:
            raise KeyError(f"no records of arm {source!r}")
        for r in runs:
            rows = [i for i, y in enumerate(r["labels"]) if int(y) in keep]
            if not rows:
                raise ValueError(f"arm {source!r} has no test item with a label in {sorted(keep)}")
            missing = [m for m in metrics if m not in r["items"]]
            if missing:
                raise KeyError(f"arm {source!r} records lack per-item {missing}")
            out.append({**r, "arm": new, "metrics": {}, "items": {m: [r["items"][m][i] for i in rows] for m in metrics}})
    return out


def preconditions(sanity: pd.DataFrame, joint_accuracy: Mapping[str, float], needs: Mapping[str, Sequence[str]],
                  delta: float) -> dict[str, tuple[bool, str]]:
    """``{claim: (holds, what was measured)}`` for ``verdict.judge``: each claim in ``needs`` is testable when
    every named sanity row of ``sanity`` (a ``verdict.judge`` table) holds and, where ``needs`` names a setting
    as ``"headroom:<setting>"``, joint training there leaves more than ``2 * delta`` below 100 %."""
    out = {}
    for claim, names in needs.items():
        failed, measured = [], []
        for name in names:
            if name.startswith("headroom:"):
                setting = name.split(":", 1)[1]
                if setting not in joint_accuracy:
                    raise KeyError(f"no joint accuracy for setting {setting!r}")
                room = 1 - joint_accuracy[setting]
                measured.append(f"joint training ({setting}) leaves {100 * room:.1f} points below 100%")
                if room <= 2 * delta:
                    failed.append(f"no headroom ({setting}): {100 * room:.1f} points, at most {200 * delta:.0f}")
            else:
                if name not in sanity.index:
                    raise KeyError(f"no sanity row {name!r}")
                if sanity.loc[name, "outcome"] != "sanity check: holds":
                    failed.append(f"fails: {name}")
        out[claim] = (not failed, "; ".join(failed) if failed else "holds; " + "; ".join(measured))
    return out
