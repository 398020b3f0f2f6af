"""DPT decoder D_DPT (Ranftl et al. 2021, in the Depth Anything V2 layout), split in two halves.

The temporal blocks can sit between the halves: `Reassemble` (4 token maps -> 4 scales x
`features` channels) and `Fusion` (RefineNet-style progressive fusion -> F_DPT at 8x the patch
grid).
"""
from __future__ import annotations

import torch
from torch import nn
import torch.nn.functional as F

from .config import DecoderConfig


class Reassemble(nn.Module):
    """Project each tapped layer to its width, resample it, then a 3x3 conv to the decoder width.

    Resampled to strides 4, 8, 16, 32 (x4, x2, x1, x0.5 of the patch grid); the 3x3 conv maps to
    the common decoder width.
    """

    def __init__(self, embed_dim: int, cfg: DecoderConfig) -> None:
        super().__init__()
        c = cfg.out_channels
        self.projects = nn.ModuleList([nn.Conv2d(embed_dim, ch, 1) for ch in c])
        self.resize_layers = nn.ModuleList([
            nn.ConvTranspose2d(c[0], c[0], kernel_size=4, stride=4),
            nn.ConvTranspose2d(c[1], c[1], kernel_size=2, stride=2),
            nn.Identity(),
            nn.Conv2d(c[3], c[3], kernel_size=3, stride=2, padding=1),
        ])
        self.layers_rn = nn.ModuleList([nn.Conv2d(ch, cfg.features, 3, padding=1, bias=False)
                                        for ch in c])

    def forward(self, tokens: list[torch.Tensor]) -> list[torch.Tensor]:
        return [rn(resize(project(t)))
                for t, project, resize,
                rn in zip(tokens, self.projects, self.resize_layers, self.layers_rn)]


class ResidualConvUnit(nn.Module):

    def __init__(self, features: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(features, features, 3, padding=1)
        self.conv2 = nn.Conv2d(features, features, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv2(F.relu(self.conv1(F.relu(x))))


class FusionBlock(nn.Module):

    def __init__(self, features: int, has_skip: bool = True) -> None:
        super().__init__()
        self.res_skip = ResidualConvUnit(features) if has_skip else None
        self.res_out = ResidualConvUnit(features)
        self.out_conv = nn.Conv2d(features, features, 1)

    def forward(self, x: torch.Tensor, skip: torch.Tensor | None,
                size: tuple[int, int]) -> torch.Tensor:
        if self.res_skip is not None:
            x = x + self.res_skip(skip)
        x = self.res_out(x)
        x = F.interpolate(x, size=size, mode="bilinear", align_corners=True)
        return self.out_conv(x)


class Fusion(nn.Module):
    """Coarse-to-fine fusion of the 4 scales; output F_DPT [B, features, 8g, 8g]."""

    def __init__(self, cfg: DecoderConfig) -> None:
        super().__init__()
        # The coarsest block (index 3) starts the path and has no skip input.
        self.refinenets = nn.ModuleList([FusionBlock(cfg.features, has_skip=i < 3)
                                         for i in range(4)])

    def forward(self, scales: list[torch.Tensor]) -> torch.Tensor:
        s1, s2, s3, s4 = scales
        x = self.refinenets[3](s4, None, s3.shape[-2:])
        x = self.refinenets[2](x, s3, s2.shape[-2:])
        x = self.refinenets[1](x, s2, s1.shape[-2:])
        return self.refinenets[0](x, s1, (2 * s1.shape[-2], 2 * s1.shape[-1]))
