"""Task heads H: relative depth (>= 0, larger = farther), unit normals, mask logits."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def _head(cin: int, hidden: int, cout: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, hidden, 3, padding=1), nn.ReLU(), nn.Conv2d(hidden, cout, 1))


class Heads(nn.Module):
    def __init__(self, channels: int, hidden: int) -> None:
        super().__init__()
        self.depth = _head(channels, hidden, 1)
        self.normal = _head(channels, hidden, 3)
        self.mask = _head(channels, hidden, 1)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        return {
            "depth": F.softplus(self.depth(x)),
            "normal": F.normalize(self.normal(x), dim=1, eps=1e-6),
            "mask_logits": self.mask(x),
        }
