"""The benchmark scripts, loaded by path: benchmarks/ is a folder of scripts, not a package."""

from __future__ import annotations

import runpy
from pathlib import Path

BENCH = Path(__file__).resolve().parents[2] / "benchmarks"


def load(name: str) -> dict:
    """The globals of ``benchmarks/<name>.py`` after running it as a module (its ``main`` guard stays shut)."""
    return runpy.run_path(str(BENCH / f"{name}.py"))
