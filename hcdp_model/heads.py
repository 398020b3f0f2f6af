"""Task heads H: relative depth (>= 0, larger = farther), unit normals, mask logits."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def _head(cin: int, hidden: int, cout: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, hidden, 3, padding=1), nn.ReLU(), nn.Conv2d(hidden, cout, 1))


def unit(v: torch.Tensor, dim: int = 1, eps: float = 1e-6) -> torch.Tensor:
    """L2-normalise along `dim`. Same as F.normalize, whose norm kernel is far slower on the CPU."""
    return v / (v * v).sum(dim, keepdim=True).sqrt().clamp_min(eps)


class Heads(nn.Module):
    def __init__(self, channels: int, hidden: int) -> None:
        super().__init__()
        self.depth = _head(channels, hidden, 1)
        self.normal = _head(channels, hidden, 3)
        self.mask = _head(channels, hidden, 1)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        return {
            "depth": F.softplus(self.depth(x)),
            "normal": unit(self.normal(x)),
            "mask_logits": self.mask(x),
        }
