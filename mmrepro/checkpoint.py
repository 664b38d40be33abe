"""What a training checkpoint holds besides weights, and how a resume is checked and restored exactly.

A checkpoint records the run's identity (method class, the method's settings,
the training config), every RNG state (Python, NumPy, torch CPU and CUDA) and
the method's own state outside its ``state_dict``: the plain attributes of the
method and of every method nested in it (numbers, strings, tensors, and lists,
tuples and dicts of them), its non-persistent buffers, and whatever a method's
optional ``extra_state()`` returns (restored by its ``load_extra_state(state)``).
That state is restored *after* ``fit_begin``, which may rebuild it from scratch.
Checkpoints are read with ``weights_only=True``: they hold tensors and plain values only.
"""

from __future__ import annotations

import math
import numbers
import pickle
import random
import zipfile
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import torch
from torch import Tensor, nn

#: TrainConfig fields a resumed run may change: they do not change what is computed
FREE_ON_RESUME = frozenset({"epochs", "resume", "progress", "checkpoint_dir", "eval_batch_size", "device",
                            "devices", "num_nodes", "strategy"})
_MODULE_INTERNALS = frozenset(vars(nn.Module()))


class CheckpointError(RuntimeError):
    """A checkpoint that cannot be read, or that belongs to another run."""


# ----------------------------------------------------------------------------- RNG states

def rng_states() -> dict[str, Any]:
    """Every random generator a training step may draw from, as tensors and plain values."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    return {"python": random.getstate(), "torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
            "numpy": {"kind": kind, "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                      "has_gauss": int(has_gauss), "cached": float(cached)}}


def set_rng_states(states: dict[str, Any]) -> None:
    """Restore what ``rng_states`` returned (the CUDA states only where CUDA is present)."""
    random.setstate(_tuples(states["python"]))
    torch.set_rng_state(states["torch"])
    if states["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])
    n = states["numpy"]
    np.random.set_state((n["kind"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["cached"]))


def _tuples(value: Any) -> Any:
    """Lists back to tuples (``random.setstate`` needs its nested tuple)."""
    return tuple(_tuples(v) for v in value) if isinstance(value, (list, tuple)) else value


# ----------------------------------------------------------------------------- method state

def _plain(value: Any, tensors: bool = True) -> bool:
    if value is None or isinstance(value, (bool, str, numbers.Real)):
        return True
    if isinstance(value, Tensor):
        return tensors
    if isinstance(value, (list, tuple)):
        return all(_plain(v, tensors) for v in value)
    if isinstance(value, dict):
        return all(isinstance(k, (str, int)) and _plain(v, tensors) for k, v in value.items())
    return False


def _methods(method: nn.Module) -> Iterator[tuple[str, nn.Module]]:
    """The method and every method nested in it (e.g. a wrapper's inner method), by module name."""
    from .methods.base import Method

    return ((name, sub) for name, sub in method.named_modules() if isinstance(sub, Method))


def _attributes(module: nn.Module, tensors: bool = True) -> dict[str, Any]:
    return {k: v for k, v in vars(module).items() if k not in _MODULE_INTERNALS and _plain(v, tensors)}


def settings(method: nn.Module) -> dict[str, Any]:
    """The public plain non-tensor attributes of the method and its nested methods (their settings)."""
    return {f"{name}.{k}" if name else k: _detach(v) for name, sub in _methods(method)
            for k, v in _attributes(sub, tensors=False).items() if not k.startswith("_")}


def _detach(value: Any) -> Any:
    """A copy made of tensors and Python builtins only (NumPy scalars become int/float: weights_only loads it)."""
    if isinstance(value, Tensor):
        return value.detach().clone()
    if isinstance(value, numbers.Real) and not isinstance(value, bool):
        return int(value) if isinstance(value, numbers.Integral) else float(value)
    if isinstance(value, (list, tuple)):
        return type(value)(_detach(v) for v in value)
    if isinstance(value, dict):
        return {k: _detach(v) for k, v in value.items()}
    return value


def _like(loaded: Any, current: Any, device: torch.device) -> Any:
    """``loaded`` with each tensor on the device of the matching tensor in ``current`` (else on ``device``)."""
    if isinstance(loaded, Tensor):
        return loaded.to(current.device if isinstance(current, Tensor) else device)
    if isinstance(loaded, (list, tuple)):
        same = isinstance(current, (list, tuple)) and len(current) == len(loaded)
        return type(loaded)(_like(v, current[i] if same else None, device) for i, v in enumerate(loaded))
    if isinstance(loaded, dict):
        other = current if isinstance(current, dict) else {}
        return {k: _like(v, other.get(k), device) for k, v in loaded.items()}
    return loaded


def _non_persistent_buffers(method: nn.Module) -> Iterator[tuple[str, nn.Module, str]]:
    for name, module in method.named_modules():
        for buffer in sorted(module._non_persistent_buffers_set):
            if module._buffers.get(buffer) is not None:
                yield (f"{name}.{buffer}" if name else buffer), module, buffer


def method_state(method: nn.Module) -> dict[str, Any]:
    """What training changed outside the method's ``state_dict`` (see the module docstring)."""
    return {"attributes": {name: _detach(_attributes(sub)) for name, sub in _methods(method)},
            "buffers": {full: module._buffers[b].detach().clone() for full, module, b in _non_persistent_buffers(method)},
            "extra": {name: _detach(sub.extra_state()) for name, sub in _methods(method) if hasattr(sub, "extra_state")}}


def load_method_state(method: nn.Module, state: dict[str, Any]) -> None:
    """Restore ``method_state`` into a method on which ``fit_begin`` has run."""
    methods = dict(_methods(method))
    device = next(iter([*method.parameters(), *method.buffers()]), torch.empty(0)).device
    for name, attributes in state["attributes"].items():
        for key, value in attributes.items():
            setattr(methods[name], key, _like(value, getattr(methods[name], key, None), device))
    buffers = {full: (module, b) for full, module, b in _non_persistent_buffers(method)}
    missing = sorted(set(state["buffers"]) - set(buffers))
    if missing:
        raise CheckpointError(f"the checkpoint has buffers {missing} that this method does not build in fit_begin")
    for full, value in state["buffers"].items():
        module, b = buffers[full]
        module._buffers[b].copy_(value)
    for name, extra in state["extra"].items():
        methods[name].load_extra_state(_like(extra, methods[name].extra_state(), device))


# ----------------------------------------------------------------------------- identity and files

def identity(method: nn.Module, config: dict[str, Any]) -> dict[str, Any]:
    """What must match for a resume: the method's class and settings, and the config's computing fields."""
    cls = type(method)
    return {"method": f"{cls.__module__}.{cls.__qualname__}", "settings": settings(method),
            "config": {k: v for k, v in config.items() if k not in FREE_ON_RESUME}}


def _differs(a: Any, b: Any) -> bool:
    both_nan = isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b)
    return a != b and not both_nan


def check_same_run(saved: dict[str, Any], current: dict[str, Any], path: Path) -> None:
    """Raise naming every difference between the checkpoint's run and this one."""
    diffs = []
    if saved["method"] != current["method"]:
        diffs.append(f"method class: {saved['method']} (checkpoint) vs {current['method']} (now)")
    for part in ("config", "settings"):
        keys = sorted(set(saved[part]) | set(current[part]))
        diffs += [f"{part} {k}: {saved[part].get(k, '<absent>')!r} (checkpoint) vs {current[part].get(k, '<absent>')!r} (now)"
                  for k in keys if _differs(saved[part].get(k), current[part].get(k))]
    if diffs:
        raise CheckpointError(f"cannot resume from {path}: it was written by a different run; " + "; ".join(diffs)
                              + ". Resume with the same settings, or start over with resume=False or another "
                                "checkpoint_dir")


def read(path: Path) -> dict[str, Any]:
    """A checkpoint's contents on the CPU (tensors and plain values only), or an error naming the file."""
    try:
        saved = torch.load(path, map_location="cpu", weights_only=True)
    except (OSError, EOFError, RuntimeError, pickle.UnpicklingError, zipfile.BadZipFile, ValueError) as error:
        raise CheckpointError(f"cannot read checkpoint {path} ({type(error).__name__}: {str(error)[:200]}); it is "
                              "truncated, corrupt or not a checkpoint of this package: delete it to start over") from error
    if not isinstance(saved, dict) or "identity" not in saved:
        raise CheckpointError(f"{path} is not a resumable mmrepro checkpoint (no run identity); delete it to start over")
    return saved

