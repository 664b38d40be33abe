"""The encoders: each outputs its declared width; bad options are named."""

from __future__ import annotations

import pytest
import torch

from mmrepro.models import MLPEncoder, ResNet18Encoder, SmallCNN


def test_encoders_output_their_declared_width():
    x = torch.rand(2, 1, 28, 28)
    for norm in ("batch", "group", "none"):
        cnn = SmallCNN(1, widths=(4, 8), norm=norm)
        assert cnn(x).shape == (2, cnn.out_dim) == (2, 8)
    assert ResNet18Encoder(1)(x).shape == (2, 512)
    assert MLPEncoder(6, hidden=5, out_dim=7)(torch.rand(2, 2, 3)).shape == (2, 7)
    with pytest.raises(ValueError, match="'batch', 'group', 'none'"):
        SmallCNN(1, norm="layer")
