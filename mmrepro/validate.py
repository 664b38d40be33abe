"""Checks of numeric settings, shared by configs and method constructors: one error wording everywhere."""

from __future__ import annotations

import math
import numbers
from typing import Any

import torch


def _bound(low: float | None, high: float | None, low_open: bool, high_open: bool) -> str:
    if low is not None and high is not None:
        return f"in {'(' if low_open else '['}{low}, {high}{')' if high_open else ']'}"
    if low is not None:
        return f"{'>' if low_open else '>='} {low}"
    return f"{'<' if high_open else '<='} {high}" if high is not None else "finite"


def number(name: str, value: Any, low: float | None = None, high: float | None = None, *,
           low_open: bool = False, high_open: bool = False, integer: bool = False) -> int | float:
    """``value`` as a Python int or float; ``ValueError`` unless it is a finite number (an integer if
    asked) within the bounds.  NumPy numbers count (``numbers.Real``/``Integral``); booleans do not."""
    kind = "an integer" if integer else "a finite number"
    ok = not isinstance(value, bool) and isinstance(value, numbers.Integral if integer else numbers.Real)
    ok = ok and math.isfinite(value)
    ok = ok and (low is None or (value > low if low_open else value >= low))
    ok = ok and (high is None or (value < high if high_open else value <= high))
    if not ok:
        raise ValueError(f"{name} must be {kind} {_bound(low, high, low_open, high_open)}, got {value!r}")
    return int(value) if integer else float(value)


def several_modalities(method: str, modalities: tuple[str, ...], why: str) -> None:
    """Raise ``ValueError`` for a method that is degenerate with fewer than two modalities."""
    if len(modalities) < 2:
        raise ValueError(f"{method} needs at least two modalities ({why}); got {list(modalities)}. Train one "
                         "modality with joint training instead (methods.build('unimodal', ...))")


def all_finite(tensor: torch.Tensor) -> bool:
    """Whether a tensor holds no NaN or inf: one float64 sum (a NaN or inf anywhere makes it non-finite),
    so a large dataset needs no boolean copy of itself."""
    if not tensor.is_floating_point():
        return True
    return bool(torch.isfinite(tensor.sum(dtype=torch.float64)))
