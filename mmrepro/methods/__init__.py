"""One module per method, all on the hook interface of ``base.Method``.

``build(name, splits)`` makes a method with its model for a dataset; to use a
method in your own code, import its class and wrap your ``MultimodalModel``.
"""

from __future__ import annotations

from typing import Callable

from ..data.core import Splits
from ..models.multimodal import build_model
from .base import Joint, LateFusionTraining, Method, StepOut, task_loss
from .agm import AGM
from .eau import EAU
from .gblending import GBlending
from .greedy import Greedy
from .iibalance import IIBalance
from .mmdynamics import MMDynamics
from .mmpareto import MMPareto
from .mslr import MSLR
from .mwam import MWAM, MissingModalityHost
from .ogm_ge import OGMGE, ogm_coefficients, true_class_scores
from .pdf import PDF
from .pmr import PMR
from .qmf import QMF
from .tmc import TMC
from .udml import UDML

#: name -> (class, default fusion head)
REGISTRY: dict[str, tuple[Callable[..., Method], str]] = {
    "joint": (Joint, "concat"),
    "late": (LateFusionTraining, "late"),
    "ogm_ge": (OGMGE, OGMGE.fusions[0]),
    "udml": (UDML, "concat"),
    "eau": (EAU, EAU.fusions[0]),
    "pdf": (PDF, PDF.fusions[0]),
    "mmdynamics": (MMDynamics, MMDynamics.fusions[0]),
    "qmf": (QMF, "late"),
    "tmc": (TMC, "late"),
    "iibalance": (IIBalance, "sum"),
    "pmr": (PMR, PMR.fusions[0]),
    "mmpareto": (MMPareto, MMPareto.fusions[0]),
    "gblending": (GBlending, GBlending.fusions[0]),
    "agm": (AGM, AGM.fusions[0]),
    "mslr": (MSLR, MSLR.fusions[0]),
    "greedy": (Greedy, Greedy.fusions[0]),
    "mwam_host": (MissingModalityHost, "late"),
    "mwam": (MWAM, "late"),
}
# BTW (a mixture of experts) and MoIR (a token-level model) bring their own models:
# import them from mmrepro.methods.btw and mmrepro.methods.moir.


def build(name: str, splits: Splits, encoder: str = "auto", fusion: str | None = None,
          modality: str | None = None, encoder_kwargs: dict | None = None, **kwargs) -> Method:
    """A method by name with a fresh model for ``splits``.

    ``"unimodal"`` is joint training on one ``modality`` alone.
    """
    if name == "unimodal":
        if modality not in splits.modalities:
            raise ValueError(f"unimodal needs modality= one of {list(splits.modalities)}, got {modality!r}")
        splits, name = splits.select([modality]), "joint"
    elif modality is not None:
        raise ValueError(f"modality= is only for 'unimodal', not {name!r}")
    if name not in REGISTRY:
        raise ValueError(f"unknown method {name!r}; valid: {', '.join(['unimodal', *REGISTRY])}")
    cls, default_fusion = REGISTRY[name]
    model = build_model(splits, encoder, fusion or default_fusion, **(encoder_kwargs or {}))
    return cls(model, task=splits.task, **kwargs)


__all__ = ["AGM", "EAU", "GBlending", "Greedy", "IIBalance", "Joint", "LateFusionTraining", "MMDynamics", "MMPareto",
           "MSLR", "MWAM", "Method", "MissingModalityHost", "OGMGE", "PDF", "PMR", "QMF", "REGISTRY", "StepOut", "TMC",
           "UDML", "build", "ogm_coefficients", "task_loss", "true_class_scores"]
