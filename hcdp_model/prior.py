"""Human geometric prior (paper §3.2, eq. 4-5).

The paper uses CSE (DensePose) embeddings, whose weights we cannot ship. Our prior encoder E_prior
is a small CNN pretrained (stage 0) to regress the synthetic data's canonical body-surface
coordinates and a person mask, then frozen, as the paper freezes CSE. Its D-channel embedding z is
projected by psi = 1x1 conv + bilinear upsampling to F_DPT's width and size (eq. 4) and added to
F_DPT (eq. 5).
Ablation variants: `fourier_uv` feeds a Fourier encoding of the predicted canonical coordinates
instead of z (the paper's "+ Fourier UV" row of Table 7); `none` removes the prior.
"""
from __future__ import annotations

import math

import torch
from torch import nn
import torch.nn.functional as F

from .config import PriorConfig


def _conv(cin: int, cout: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride=stride, padding=1),
                         nn.GroupNorm(8 if cout % 8 == 0 else 1, cout), nn.ReLU())


class PriorEncoder(nn.Module):
    """Image [B,3,H,W] -> embedding z [B,D,H/8,W/8].

    `head` reads z as canonical xyz (3) + mask logit (1).
    """

    def __init__(self, cfg: PriorConfig) -> None:
        super().__init__()
        w = cfg.width
        self.stem = nn.Sequential(_conv(3, w, 2), _conv(w, 2 * w, 2), _conv(2 * w, 2 * w, 2),
                                  _conv(2 * w, 2 * w), _conv(2 * w, 2 * w))
        self.embed = nn.Conv2d(2 * w, cfg.embed_dim, 1)
        self.head = nn.Conv2d(cfg.embed_dim, 4, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.embed(self.stem(x))

    def predict(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Canonical coordinates [B,3,H,W] and mask logits [B,1,H,W] at the input size.

        Stage-0 targets.
        """
        out = F.interpolate(self.head(self(x)), size=x.shape[-2:], mode="bilinear",
                            align_corners=False)
        return out[:, :3], out[:, 3:]


def fourier_features(x: torch.Tensor, frequencies: int) -> torch.Tensor:
    """[B,C,H,W] -> [B, 2*C*F, H, W]: sin/cos of x * pi * 2^k, k = 0..F-1."""
    scales = math.pi * 2.0 ** torch.arange(frequencies, device=x.device, dtype=x.dtype)
    arg = (x[:, :, None] * scales[None, None, :, None, None]).flatten(1, 2)
    return torch.cat([arg.sin(), arg.cos()], dim=1)


class HumanPrior(nn.Module):

    def __init__(self, cfg: PriorConfig, features: int) -> None:
        super().__init__()
        self.kind = cfg.kind
        self.frequencies = cfg.fourier_frequencies
        self.encoder = PriorEncoder(cfg)
        z_dim = cfg.embed_dim if cfg.kind == "learned" else 2 * 3 * cfg.fourier_frequencies
        self.psi = nn.Conv2d(z_dim, features, 1)

    def embedding(self, x: torch.Tensor) -> torch.Tensor:
        z = self.encoder(x)
        if self.kind == "fourier_uv":
            z = fourier_features(self.encoder.head(z)[:, :3], self.frequencies)
        return z

    def forward(self, x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        """z~ = psi(z) at `size` (eq. 4), to be added to F_DPT (eq. 5)."""
        return F.interpolate(self.psi(self.embedding(x)), size=size, mode="bilinear",
                             align_corners=False)
