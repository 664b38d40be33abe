"""Run sizes: ``smoke`` (tests, seconds), ``book`` (the rendered site, minutes on 2 CPU cores),
``full`` (paper scale, on a GPU).  A chapter reads one ``profile`` parameter and picks its sizes here."""

from __future__ import annotations

import os
from types import SimpleNamespace
from typing import Any, Mapping, TypeVar

PROFILES = ("smoke", "book", "full")
T = TypeVar("T")


def current(default: str = "smoke") -> str:
    """The profile named by ``MMREPRO_PROFILE`` (the notebooks' environment fallback)."""
    return check(os.environ.get("MMREPRO_PROFILE", default))


def check(profile: str) -> str:
    if profile not in PROFILES:
        raise ValueError(f"unknown profile {profile!r}; valid: {', '.join(PROFILES)}")
    return profile


def pick(profile: str, *, smoke: T, book: T, full: T) -> T:
    """The value for ``profile``: ``pick(profile, smoke=2, book=12, full=100)``."""
    return {"smoke": smoke, "book": book, "full": full}[check(profile)]


def sizes(profile: str, **table: Mapping[str, Any]) -> SimpleNamespace:
    """A chapter's sizes for ``profile`` from one dict per profile, all naming the same sizes:
    ``sizes(profile, smoke=dict(epochs=1), book=dict(epochs=5), full=dict(epochs=40)).epochs``."""
    if set(table) != set(PROFILES):
        raise ValueError(f"sizes needs one dict per profile ({', '.join(PROFILES)}), got {sorted(table)}")
    names = set().union(*table.values())
    uneven = {p: sorted(names - set(d)) for p, d in table.items() if names - set(d)}
    if uneven:
        raise ValueError(f"every profile must name the same sizes; missing {uneven}")
    return SimpleNamespace(**table[check(profile)])
