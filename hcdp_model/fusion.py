"""Local geometry enhancement (paper §3.2).

The CNN branch E_CNN on the full-resolution image, the fusion phi over [F_DPT, F_CNN], and
channel weight adaptation (CWA, eq. 1-3).
"""
from __future__ import annotations

import torch
from torch import nn


class CNNBranch(nn.Module):
    """Shallow full-resolution conv branch for edges and texture (DAViD's "resizer" idea)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.layers = nn.Sequential(
            nn.Conv2d(3, channels // 2, 3, padding=1), nn.ReLU(),
            nn.Conv2d(channels // 2, channels, 3, padding=1), nn.ReLU(),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)


class FeatureFusion(nn.Module):
    """phi_fusion: non-linear mapping of the channel concatenation [F_DPT, F_CNN]."""

    def __init__(self, in_channels: int, channels: int) -> None:
        super().__init__()
        self.layers = nn.Sequential(
            nn.Conv2d(in_channels, channels, 3, padding=1), nn.ReLU(),
            nn.Conv2d(channels, channels, 3, padding=1), nn.ReLU(),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)


class ChannelWeightAdaptation(nn.Module):
    """q = GAP(F) (eq. 1); a = sigmoid(MLP(q)) (eq. 2); F' = a_c * F (eq. 3)."""

    def __init__(self, channels: int, reduction: int) -> None:
        super().__init__()
        hidden = max(channels // reduction, 4)
        self.mlp = nn.Sequential(nn.Linear(channels, hidden), nn.ReLU(),
                                 nn.Linear(hidden, channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        q = x.mean(dim=(-2, -1))
        a = torch.sigmoid(self.mlp(q))
        return x * a[..., None, None]
