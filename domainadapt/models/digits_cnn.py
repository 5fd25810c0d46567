"""The small CNN of Ganin et al. 2016 (JMLR, "Domain-Adversarial Training of Neural Networks"), sec. 5.2 / appendix.

MNIST architecture: conv 5×5×32 → ReLU → max-pool 2 → conv 5×5×48 → ReLU → max-pool 2 → flattened features.
Label head fc100 → fc100 → classes (see `MLPHead`). BatchNorm is an option (off by default, as in the paper).
"""

from __future__ import annotations

import torch
from torch import nn

from .registry import register_backbone


def _conv_out(size: int) -> int:
    size = (size - 4) // 2  # conv 5×5 (no padding) + max-pool 2
    return (size - 4) // 2


class DigitsCNN(nn.Module):
    """Feature extractor; `out_features` is 48·s² (1200 for 32×32 input, 768 for 28×28 as in the paper)."""

    def __init__(self, image_size: int = 32, in_channels: int = 3, batch_norm: bool = False) -> None:
        super().__init__()
        if _conv_out(image_size) < 1:
            raise ValueError(f"DigitsCNN needs images of at least 16×16 pixels, got {image_size}")
        norm = (lambda c: nn.BatchNorm2d(c)) if batch_norm else (lambda c: nn.Identity())
        self.conv1 = nn.Conv2d(in_channels, 32, kernel_size=5)
        self.bn1 = norm(32)
        self.conv2 = nn.Conv2d(32, 48, kernel_size=5)
        self.bn2 = norm(48)
        self.pool = nn.MaxPool2d(2)
        self.act = nn.ReLU()
        self.out_features = 48 * _conv_out(image_size) ** 2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = (x - 0.5) / 0.5  # inputs arrive in [0, 1]
        x = self.pool(self.act(self.bn1(self.conv1(x))))
        x = self.pool(self.act(self.bn2(self.conv2(x))))
        return torch.flatten(x, 1)


@register_backbone("digits_cnn", head_hidden=(100, 100))
def digits_cnn(image_size: int, in_channels: int = 3, batch_norm: bool = False) -> DigitsCNN:
    """The CNN of Ganin et al. 2016 (conv32-conv48), with their fc100-fc100 label head."""
    return DigitsCNN(image_size=image_size, in_channels=in_channels, batch_norm=batch_norm)
