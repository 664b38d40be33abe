"""The Baselines chapter's sanity runs as data: run specs, claims, preconditions, and the MMPareto lr table.

The sanity host is the IIBalance chapter's AV-Digits host (MLP encoders, one linear head per modality summed,
SGD), so a baseline's sanity record is the same run (same key) as its record there whenever the two chapters
use the same profile sizes.  No training run imports this module.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import pandas as pd

from .. import verdict
from ..experiment import RunSpec

DATA = {"name": "av_digits"}
WEIGHT = ("mmrepro.measures.baselines:corrupted_weight", {"std": 1.0})
NO_REBALANCING = 1e9  # a Greedy epsilon no utilisation gap reaches: the same network, never re-balanced

#: metric -> (delta, its reason): the smallest effect of interest (the papers report none on these data)
DELTA = {
    "probe_audio": (0.03, "3 points of the weak encoder's probe (9 of 300 test items), as in the IIBalance chapter"),
    "accuracy": (0.01, "1 point of fused accuracy (3 of 300 test items): joint training leaves only a few points "
                       "of headroom on AV-Digits"),
    "weight_drop": (0.02, "a drop of 0.02 in a fusion weight; each run records its clean and corrupted weights"),
}
LEARNS = 0.5  # a dynamic-fusion claim needs a model that learns: more than half the test items right (chance 0.1)


@dataclass(frozen=True)
class Sanity:
    """One baseline's sanity run: its arm, method and options, the metric its paper's claim moves, its control."""

    arm: str
    method: str
    kwargs: dict[str, Any]
    metric: str
    control: str | None  # None: the within-run measurement against zero
    paper: str
    fusion: str | None = "sum"  # None: the method's own default head
    measures: tuple = ("probe",)


SANITY = (
    Sanity("OGM-GE", "ogm_ge", {"alpha": 0.8}, "probe_audio", "joint",
           "modulation lets the suppressed modality's encoder learn more"),
    Sanity("PMR", "pmr", {}, "probe_audio", "joint", "the prototype loss accelerates the slow modality"),
    Sanity("MMPareto", "mmpareto", {}, "probe_audio", "joint", "innocent unimodal assistance trains each encoder better"),
    Sanity("AGM", "agm", {}, "probe_audio", "joint", "adaptive modulation boosts the under-optimised modality"),
    Sanity("Greedy", "greedy", {}, "accuracy", "Greedy, no re-balancing",
           "re-balancing steps improve the model over the same network trained greedily", fusion=None),
    Sanity("G-Blending", "gblending", {}, "accuracy", "joint",
           "blending the heads by generalisation over overfitting improves the fused model"),
    Sanity("MSLR", "mslr", {}, "accuracy", "joint", "modality-specific learning rates improve additive late fusion"),
    Sanity("EAU", "eau", {"noise_epoch": 0}, "weight_drop", None, "a noisier modality gets a smaller fusion weight",
           fusion=None, measures=("probe", WEIGHT)),
    Sanity("PDF", "pdf", {}, "weight_drop", None, "a less confident (corrupted) modality gets a smaller fusion weight",
           fusion=None, measures=("probe", WEIGHT)),
    Sanity("MMDynamics", "mmdynamics", {}, "weight_drop", None,
           "the modality-level confidence of a corrupted modality drops", fusion=None, measures=("probe", WEIGHT)),
)
CONTROLS = (  # arms that no claim is about: the comparators and the preconditions' unimodal runs
    Sanity("joint", "joint", {}, "", None, ""),
    Sanity("audio alone", "unimodal", {"modality": "audio"}, "", None, "", fusion=None),
    Sanity("image alone", "unimodal", {"modality": "image"}, "", None, "", fusion=None),
    Sanity("Greedy, no re-balancing", "greedy", {"epsilon": NO_REBALANCING}, "", None, "", fusion=None),
)

#: the MMPareto learning-rate diagnosis: arm -> (method, method options, divisor of the profile's lr)
LR_ARMS = {
    "MMPareto, lr": ("mmpareto", {}, 1),
    "MMPareto without the magnitude step, lr": ("mmpareto", {"rescale": False}, 1),
    "MMPareto, lr / 5": ("mmpareto", {}, 5),
    "joint, lr": ("joint", {}, 1),
    "joint, lr / 5": ("joint", {}, 5),
}
LR_EPOCHS = 3


@dataclass(frozen=True)
class Size:
    """A profile's size of the sanity runs."""

    seeds: list[int]
    epochs: int
    patience: int | None
    lr: float
    subsample: int | None = None
    encoder: str = "mlp"
    lr_seeds: list[int] = field(default_factory=lambda: [0, 1, 2])


SIZES = {  # per profile; book: every arm converges by early stopping well inside the cap
    "smoke": Size(seeds=[0, 1], epochs=2, patience=None, lr=0.05, subsample=300, lr_seeds=[0, 1]),
    "book": Size(seeds=list(range(6)), epochs=100, patience=8, lr=0.05),
    "full": Size(seeds=list(range(10)), epochs=100, patience=20, lr=1e-3, encoder="resnet18"),
}


def train_config(size: Size, epochs: int | None = None, lr: float | None = None) -> dict[str, Any]:
    """The IIBalance chapter's SGD recipe (the baselines' authors trained with SGD) at this size."""
    return dict(epochs=epochs or size.epochs, patience=size.patience if epochs is None else None, batch_size=64,
                optimizer="sgd", lr=size.lr if lr is None else lr, momentum=0.9, weight_decay=1e-4, lr_step=20,
                lr_gamma=0.2)


def _build(entry: Sanity, size: Size) -> tuple[dict, dict]:
    """(build options, method options) as the IIBalance chapter builds the same arm."""
    build = {"encoder": size.encoder}
    if entry.method == "unimodal":
        return {**build, "modality": entry.kwargs["modality"]}, {}
    return ({**build, "fusion": entry.fusion} if entry.fusion else build), dict(entry.kwargs)


def sanity_specs(size: Size) -> list[RunSpec]:
    """Every sanity run: each baseline, its controls, and the unimodal runs, on every seed."""
    train = train_config(size)
    specs = []
    for entry in (*CONTROLS, *SANITY):
        build, kwargs = _build(entry, size)
        specs += [RunSpec(arm=entry.arm, method=entry.method, seed=seed, data=DATA, train=train, method_kwargs=kwargs,
                          build=build, subsample=size.subsample, measures=entry.measures) for seed in size.seeds]
    return specs


def lr_specs(size: Size) -> list[RunSpec]:
    """Short runs (``LR_EPOCHS`` epochs, no early stopping) of MMPareto and joint at the profile's lr and a fifth."""
    epochs = min(LR_EPOCHS, size.epochs)
    return [RunSpec(arm=arm, method=method, seed=seed, data=DATA, train=train_config(size, epochs, size.lr / divisor),
                    method_kwargs=dict(kwargs), build={"encoder": size.encoder, "fusion": "sum"},
                    subsample=size.subsample, measures=("probe",))
            for arm, (method, kwargs, divisor) in LR_ARMS.items() for seed in size.lr_seeds]


def precondition_claims() -> list[verdict.Claim]:
    """The settings' checks (sanity rows, never in the family): audio is weak; each dynamic-fusion baseline learns."""
    probe_delta, probe_reason = DELTA["probe_audio"]
    checks = [
        verdict.Claim("precondition: audio is the weaker modality alone", "accuracy", "image alone", "audio alone",
                      0.03, "the data design makes audio weak; a gap under 3 points would not be a weak modality",
                      kind="sanity"),
        verdict.Claim("precondition: joint training under-trains the audio encoder", "probe_audio", "audio alone",
                      "joint", probe_delta, probe_reason, kind="sanity"),
    ]
    checks += [verdict.Claim(f"precondition: {s.arm} learns", "accuracy", s.arm, None, LEARNS,
                             "more than half the test items right (chance is 1 in 10)", kind="sanity")
               for s in SANITY if s.metric == "weight_drop"]
    return checks


def claims() -> list[verdict.Claim]:
    """One claim per baseline: its paper's effect on the metric it moves, against its control (or zero)."""
    return [verdict.Claim(s.arm, s.metric, s.arm, s.control, *DELTA[s.metric], paper=s.paper) for s in SANITY]


def preconditions(checks: pd.DataFrame, runs: pd.DataFrame) -> dict[str, tuple[bool, str]]:
    """Whether each claim is testable here, from the precondition table and the runs' accuracies.

    Probe claims need a weak audio modality that joint training under-trains; accuracy claims need the control
    to leave more than twice ``delta`` below 100 %; weight claims need the baseline to learn.
    """
    holds = checks["outcome"].eq("sanity check: holds")
    out = {}
    for s in SANITY:
        if s.metric == "probe_audio":
            names = ["precondition: audio is the weaker modality alone",
                     "precondition: joint training under-trains the audio encoder"]
        elif s.metric == "weight_drop":
            names = [f"precondition: {s.arm} learns"]
        else:
            names = []
        failed = [n.split(": ", 1)[1] for n in names if not holds[n]]
        ok, said = not failed, ("fails: " + "; ".join(failed)) if failed else "holds"
        if s.metric == "accuracy":
            room = 1 - runs.loc[runs["arm"] == s.control, "accuracy"].mean()
            ok, said = room > 2 * DELTA["accuracy"][0], f"{s.control} leaves {100 * room:.1f} points below 100 %"
        out[s.arm] = (ok, said)
    return out


def lr_table(records: Sequence[Mapping]) -> pd.DataFrame:
    """The MMPareto lr diagnosis: per arm its lr, magnitude step, and the mean (min, max) audio probe and accuracy."""
    rows = [{"arm": r["arm"], "seed": r["seed"], "lr": r["spec"]["train"]["lr"],
             "magnitude step": r["spec"]["method"] == "mmpareto" and r["spec"]["method_kwargs"].get("rescale", True),
             "audio probe": r["metrics"]["probe_audio"], "accuracy": r["metrics"]["accuracy"]}
            for r in records if r["arm"] in LR_ARMS]
    if not rows:
        raise ValueError(f"no records of the lr arms {list(LR_ARMS)}")
    runs = pd.DataFrame(rows)
    table = runs.groupby("arm", sort=False).agg(
        lr=("lr", "first"), magnitude_step=("magnitude step", "first"), seeds=("seed", "size"),
        audio_probe=("audio probe", "mean"), audio_probe_min=("audio probe", "min"),
        audio_probe_max=("audio probe", "max"), accuracy=("accuracy", "mean"))
    return table.rename(columns=lambda c: c.replace("_", " "))


def chapters_using(class_name: str, registry: str, book: Path, skip: str = "baselines") -> str:
    """The chapters (``book/*.md`` stems) whose source builds a baseline, by class or by registry name."""
    pattern = re.compile(rf"\b{re.escape(class_name)}\(|[\"']{re.escape(registry)}[\"']")
    used = [p.stem for p in sorted(Path(book).glob("*.md")) if p.stem != skip and pattern.search(p.read_text())]
    return ", ".join(used) or "none yet"
