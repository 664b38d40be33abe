"""One module per method, all on the hook interface of ``base.Method``.

``build(name, splits)`` makes a method with its model for a dataset (each class's
``fusions[0]`` is its default fusion head); to use a method in your own code,
import its class and wrap your model.
"""

from __future__ import annotations

from ..data.core import Splits
from .agm import AGM
from .base import (Joint, LateFusionTraining, Method, StepOut, fit_submodel, fusion_name, task_loss,
                   unimodal)
from .btw import BTW
from .eau import EAU
from .gblending import GBlending
from .greedy import Greedy
from .iibalance import IIBalance
from .mmdynamics import MMDynamics
from .mmpareto import MMPareto
from .moir import MoIR
from .mslr import MSLR
from .mwam import MWAM, MissingModalityHost
from .noise_augmented import NoiseAugmented
from .ogm_ge import OGMGE, ogm_coefficients, true_class_scores
from .pdf import PDF
from .pmr import PMR
from .qmf import QMF
from .tmc import TMC
from .udml import UDML

#: name -> method class
REGISTRY: dict[str, type[Method]] = {
    "joint": Joint,
    "late": LateFusionTraining,
    "ogm_ge": OGMGE,
    "udml": UDML,
    "eau": EAU,
    "pdf": PDF,
    "mmdynamics": MMDynamics,
    "qmf": QMF,
    "tmc": TMC,
    "iibalance": IIBalance,
    "pmr": PMR,
    "mmpareto": MMPareto,
    "gblending": GBlending,
    "agm": AGM,
    "mslr": MSLR,
    "greedy": Greedy,
    "mwam_host": MissingModalityHost,
    "mwam": MWAM,
    "btw": BTW,
    "moir": MoIR,
    "noise_augmented": NoiseAugmented,
}


def build(name: str, splits: Splits, encoder: str = "auto", fusion: str | None = None,
          modality: str | None = None, encoder_kwargs: dict | None = None, **kwargs) -> Method:
    """A method by name with a fresh model for ``splits`` (``kwargs`` go to its constructor).

    ``"unimodal"`` is joint training on one ``modality`` alone (train it on ``splits.select([modality])``).
    """
    if name == "unimodal":
        return unimodal(splits, modality, encoder, fusion or "concat", **(encoder_kwargs or {}))
    if modality is not None:
        raise ValueError(f"modality= is only for 'unimodal', not {name!r}")
    if name not in REGISTRY:
        raise ValueError(f"unknown method {name!r}; valid: {', '.join(['unimodal', *REGISTRY])}")
    return REGISTRY[name].for_splits(splits, encoder, fusion, encoder_kwargs, **kwargs)


__all__ = ["AGM", "BTW", "EAU", "GBlending", "Greedy", "IIBalance", "Joint", "LateFusionTraining", "MMDynamics",
           "MMPareto", "MSLR", "MWAM", "Method", "MissingModalityHost", "MoIR", "NoiseAugmented", "OGMGE", "PDF", "PMR",
           "QMF", "REGISTRY", "StepOut", "TMC", "UDML", "build", "fit_submodel", "fusion_name", "ogm_coefficients",
           "task_loss", "true_class_scores", "unimodal"]
