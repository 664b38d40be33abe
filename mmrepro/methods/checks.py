"""Constructor checks shared by the baselines: each error names the bad value and what is valid."""

from __future__ import annotations

import math

from ..models.multimodal import MultimodalModel


def require_modalities(method: str, model: MultimodalModel, exactly: int | None = None) -> None:
    """Refuse one modality (every balancing method is degenerate there), or a count other than ``exactly``."""
    n = len(model.modalities)
    if exactly is not None and n != exactly:
        raise ValueError(f"{method} is defined for exactly {exactly} modalities, got {n}: {list(model.modalities)}")
    if n < 2:
        raise ValueError(f"{method} balances modalities and needs at least 2, got {n}: {list(model.modalities)}")


def check_range(name: str, value: float, low: float = -math.inf, high: float = math.inf,
                low_open: bool = False, high_open: bool = False) -> None:
    """``value`` must lie in the interval from ``low`` to ``high`` (open ends where asked)."""
    above = value > low if low_open else value >= low
    below = value < high if high_open else value <= high
    if not (above and below):
        interval = f"{'(' if low_open else '['}{low}, {high}{')' if high_open else ']'}"
        raise ValueError(f"{name} must lie in {interval}, got {value}")


def check_window(starts: int, ends: int) -> None:
    """An epoch window ``0 <= modulation_starts <= modulation_ends``."""
    if not 0 <= starts <= ends:
        raise ValueError(f"need 0 <= modulation_starts <= modulation_ends, got {starts} and {ends}")


def check_choice(name: str, value: object, valid: tuple) -> None:
    if value not in valid:
        raise ValueError(f"unknown {name} {value!r}; valid: {', '.join(map(repr, valid))}")
