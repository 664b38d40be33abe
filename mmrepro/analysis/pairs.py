"""Two arms compared on the seeds they share, for the chapters' descriptive tables (not verdicts).

``verdict.judge`` pairs the arms of a declared claim; the chapters also show unjudged paired differences
(ablations, regimes, cells of a table), and they all pair the same way, here.  It lives beside the analyses
rather than in ``verdict`` because the verdict module is part of some records' keys.
"""

from __future__ import annotations

from typing import Mapping

import numpy as np

from ..verdict import ALPHA, Arm, Comparison, compare, fmt_interval


def paired(evidence: Mapping[str, Arm], treatment: str, control: str | None, metric: str,
           level: float = 1 - ALPHA) -> Comparison | None:
    """Treatment − control (or the treatment against zero, ``control=None``) on their shared seeds, with its
    ``level`` interval over seeds and test items; None with fewer than two shared seeds."""
    t = evidence[treatment]
    c = t if control is None else evidence[control]
    shared = [s for s in t.seeds if s in c.seeds]
    if len(shared) < 2:
        return None
    scores = t.take(metric, shared)
    return compare(scores, np.zeros_like(scores) if control is None else c.take(metric, shared), level)


def interval(evidence: Mapping[str, Arm], treatment: str, control: str | None, metric: str,
             scale: float = 100.0, digits: int = 1) -> str:
    """``paired`` as text, 'effect [low, high]' in ``scale`` units; '—' when it cannot be computed."""
    cmp = paired(evidence, treatment, control, metric)
    return "—" if cmp is None else fmt_interval({"effect": cmp.effect, "low": cmp.low, "high": cmp.high},
                                                scale, digits)
