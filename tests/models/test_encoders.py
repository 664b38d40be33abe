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


def test_cnn_encoders_run_channels_last_and_compute_what_nchw_computes():
    torch.manual_seed(0)
    cnn = SmallCNN(3, widths=(4, 8)).eval()
    assert all(p.is_contiguous(memory_format=torch.channels_last) for p in cnn.parameters() if p.dim() == 4)
    x = torch.rand(2, 3, 12, 12)
    reference = SmallCNN(3, widths=(4, 8)).to(memory_format=torch.contiguous_format).eval()
    reference.load_state_dict(cnn.state_dict())
    body = reference.body(x)  # NCHW all the way
    assert torch.allclose(cnn(x), body.mean(dim=(-2, -1)), atol=1e-6)
