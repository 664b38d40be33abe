"""Per-modality encoders: each maps one modality's batch tensor to a (B, D) feature."""

from __future__ import annotations

from typing import Literal, Sequence

import torch
from torch import nn
from torchvision.models import resnet18

Norm = Literal["batch", "group", "none"]
ENCODERS = ("cnn", "resnet18", "mlp")


def _norm(kind: Norm, channels: int) -> nn.Module:
    if kind == "batch":
        return nn.BatchNorm2d(channels)
    if kind == "group":
        return nn.GroupNorm(min(8, channels), channels)
    if kind == "none":
        return nn.Identity()
    raise ValueError(f"unknown norm {kind!r}; valid: 'batch', 'group', 'none'")


class SmallCNN(nn.Module):
    """Conv-norm-ReLU-pool blocks and global average pooling: the CPU-profile encoder."""

    def __init__(self, in_channels: int = 1, widths: Sequence[int] = (16, 32, 64), norm: Norm = "batch"):
        super().__init__()
        layers: list[nn.Module] = []
        for width in widths:
            layers += [nn.Conv2d(in_channels, width, 3, padding=1, bias=norm == "none"), _norm(norm, width),
                       nn.ReLU(inplace=True), nn.MaxPool2d(2, ceil_mode=True)]
            in_channels = width
        self.body = nn.Sequential(*layers)
        self.out_dim = widths[-1]
        self.to(memory_format=torch.channels_last)  # NHWC convolutions: 1.6x faster steps on CPU

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x.contiguous(memory_format=torch.channels_last)).mean(dim=(-2, -1))


class ResNet18Encoder(nn.Module):
    """torchvision's ResNet-18 trunk (from scratch), first conv adapted to the input channels."""

    def __init__(self, in_channels: int = 1):
        super().__init__()
        net = resnet18(weights=None)
        net.conv1 = nn.Conv2d(in_channels, 64, kernel_size=7, stride=2, padding=3, bias=False)
        net.fc = nn.Identity()
        self.net = net
        self.out_dim = 512
        self.to(memory_format=torch.channels_last)  # NHWC convolutions, as SmallCNN

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x.contiguous(memory_format=torch.channels_last))


class MLPEncoder(nn.Module):
    """Two-layer MLP for vector modalities (synthetic data, pre-extracted features)."""

    def __init__(self, in_dim: int, hidden: int = 64, out_dim: int = 32):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(in_dim, hidden), nn.ReLU(inplace=True), nn.Linear(hidden, out_dim), nn.ReLU())
        self.out_dim = out_dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x.flatten(1))


def make_encoder(kind: str, input_shape: tuple[int, ...], **kwargs) -> nn.Module:
    """An encoder by name for one example's shape (C, H, W) or (D,)."""
    if kind == "cnn":
        _check_shape(kind, input_shape, 3)
        return SmallCNN(input_shape[0], **kwargs)
    if kind == "resnet18":
        _check_shape(kind, input_shape, 3)
        return ResNet18Encoder(input_shape[0], **kwargs)
    if kind == "mlp":
        return MLPEncoder(int(torch.tensor(input_shape).prod()), **kwargs)
    raise ValueError(f"unknown encoder {kind!r}; valid: {', '.join(ENCODERS)}")


def _check_shape(kind: str, shape: tuple[int, ...], ndim: int) -> None:
    if len(shape) != ndim:
        raise ValueError(f"encoder {kind!r} needs inputs of shape (C, H, W); got an example of shape {shape}")
