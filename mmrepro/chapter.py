"""The preamble every chapter runs first: parameters parsed and checked before any training.

papermill passes ``-p seeds "[0,1,2]"`` as the *string* ``"[0,1,2]"``; ``setup`` turns
such strings into Python values, rejects empty, duplicate or non-integer seeds and
non-finite or out-of-range numbers with an error naming the parameter, and sets
the thread count and pandas display options.  ``build_each`` builds every method a
chapter will train once, so a constructor error comes before minutes of training.
"""

from __future__ import annotations

import ast
import math
import numbers
from typing import Any, Callable, Mapping, Sequence

import pandas as pd
import torch

from . import profiles
from .checkpoint import rng_states, set_rng_states

DEVICES = ("auto", "cpu", "cuda", "mps")
Bounds = tuple[float | None, float | None]


class ParameterError(ValueError):
    """A chapter parameter that cannot be used; the message names it and what is valid."""


def parse(value: Any) -> Any:
    """A papermill string in its Python form: ``"[0,1,2]"`` -> ``[0, 1, 2]``, ``"0.5"`` -> ``0.5``,
    ``"nan"`` -> ``nan``, ``"None"`` -> ``None``; any other string, and every non-string, unchanged."""
    if not isinstance(value, str):
        return value
    try:
        return _literal(ast.parse(value.strip(), mode="eval").body)
    except (ValueError, SyntaxError):
        return value


_NAMES = {"nan": math.nan, "inf": math.inf, "None": None, "True": True, "False": False}


def _literal(node: ast.AST) -> Any:
    """Numbers, strings, None/True/False, nan/inf, and lists and tuples of them; anything else is an error."""
    if isinstance(node, ast.Constant):
        return node.value
    if isinstance(node, ast.Name) and node.id in _NAMES:
        return _NAMES[node.id]
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
        operand = _literal(node.operand)
        if isinstance(operand, (int, float)) and not isinstance(operand, bool):
            return -operand if isinstance(node.op, ast.USub) else operand
    if isinstance(node, (ast.List, ast.Tuple)):
        items = [_literal(e) for e in node.elts]
        return items if isinstance(node, ast.List) else tuple(items)
    raise ValueError(f"not a literal: {ast.dump(node)}")


def parse_seeds(value: Any) -> list[int]:
    """Seeds as a list of distinct non-negative integers (one integer is one seed)."""
    seeds = parse(value)
    if isinstance(seeds, numbers.Integral) and not isinstance(seeds, bool):
        seeds = [seeds]
    if not isinstance(seeds, (list, tuple)) or not seeds:
        raise ParameterError(f"seeds must be a non-empty list of integers such as [0, 1, 2], got {value!r}")
    bad = [s for s in seeds if isinstance(s, bool) or not isinstance(s, numbers.Integral) or s < 0]
    if bad:
        raise ParameterError(f"seeds must be non-negative integers, got {bad} in {value!r}")
    repeated = sorted({s for s in seeds if list(seeds).count(s) > 1})
    if repeated:
        raise ParameterError(f"seeds must be distinct (a repeated seed repeats a run and shrinks the spread), "
                             f"got {repeated} more than once in {value!r}")
    return [int(s) for s in seeds]


def _check_finite(name: str, value: Any) -> None:
    if isinstance(value, float) and not math.isfinite(value):
        raise ParameterError(f"parameter {name} must be finite, got {value}")
    if isinstance(value, (list, tuple)):
        for item in value:
            _check_finite(name, item)


def _check_bounds(name: str, value: Any, bounds: Bounds) -> None:
    low, high = bounds
    items = value if isinstance(value, (list, tuple)) else [value]
    for item in items:
        if isinstance(item, bool) or not isinstance(item, numbers.Real):
            raise ParameterError(f"parameter {name} must be a number, got {item!r}")
        if (low is not None and item < low) or (high is not None and item > high):
            raise ParameterError(f"parameter {name} must lie in [{low if low is not None else '-inf'}, "
                                 f"{high if high is not None else 'inf'}], got {item}")


def setup(profile: str, device: str = "auto", seeds: Any = None, *,
          default_seeds: Mapping[str, Sequence[int]] | None = None, threads: int | None = 1,
          bounds: Mapping[str, Bounds] | None = None, **params: Any) -> dict[str, Any]:
    """Check and parse a chapter's parameters; returns them by name, ready for ``globals().update``.

    ``seeds=None`` takes ``default_seeds[profile]``; ``bounds`` gives inclusive (low, high)
    limits of numeric parameters (None: unbounded); ``threads``: torch's intra-op thread
    count (None leaves it alone; tiny models run fastest on one).
    """
    profiles.check(profile)
    if device not in DEVICES:
        raise ParameterError(f"unknown device {device!r}; valid: {', '.join(DEVICES)}")
    if seeds is None and default_seeds is not None:
        seeds = default_seeds[profile]
    parsed: dict[str, Any] = {"profile": profile, "device": device}
    if seeds is not None:
        parsed["seeds"] = parse_seeds(seeds)
    for name, value in params.items():
        parsed[name] = parse(value)
        _check_finite(name, parsed[name])
    for name, limits in (bounds or {}).items():
        if name not in parsed:
            raise ParameterError(f"bounds name {name!r}, which is not a parameter; parameters: {sorted(parsed)}")
        if parsed[name] is not None:
            _check_bounds(name, parsed[name], limits)
    if threads is not None:
        torch.set_num_threads(threads)
    pd.set_option("display.max_colwidth", None)  # verdict and protocol cells are sentences: show them whole
    return parsed


def build_each(recipes: Mapping[str, Callable[[], Any]]) -> None:
    """Build every recipe once and discard it, so a bad setting fails before any training.

    Every RNG state is restored afterwards, so this leaves every later number unchanged.
    """
    states = rng_states()
    try:
        for name, factory in recipes.items():
            try:
                factory()
            except (ValueError, TypeError, KeyError) as error:
                raise ParameterError(f"recipe {name!r} cannot be built: {error}") from error
    finally:
        set_rng_states(states)
