"""Auxiliary unimodal heads: sized to the model, they replace the unimodal logits and leave the fused ones."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from mmrepro.models import build_model
from mmrepro.models.auxiliary import AuxiliaryHeads


def test_heads_replace_only_the_unimodal_logits(synthetic):
    torch.manual_seed(0)
    model = build_model(synthetic, fusion="concat")
    heads = AuxiliaryHeads.for_model(model)
    out = model(synthetic.train.batch(range(4)))
    aux = heads(out)
    assert torch.equal(aux.logits, out.logits) and aux.features is out.features
    for m in synthetic.modalities:
        assert torch.allclose(aux.unimodal_logits[m], heads.heads[m](out.features[m]))
        assert aux.unimodal_logits[m].shape == (4, synthetic.num_classes)
    model.fusion = nn.Identity()
    with pytest.raises(ValueError, match="no linear layer"):
        AuxiliaryHeads.for_model(model)
