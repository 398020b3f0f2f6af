"""Human geometric prior (paper §3.2, eq. 4-5).

The paper uses CSE (DensePose) embeddings, whose weights we cannot ship. Our prior encoder E_prior
is a small CNN pretrained (stage 0) to regress the synthetic data's canonical body-surface
coordinates and a person mask, then frozen, as the paper freezes CSE. Its D-channel embedding z is
projected by psi = 1x1 conv + bilinear upsampling to F_DPT's width and size (eq. 4) and added to
F_DPT (eq. 5).
Ablation variants: `fourier_uv` feeds a Fourier encoding of the predicted canonical coordinates
instead of z (the paper's "+ Fourier UV" row of Table 7); `none` removes the prior.

`selfie` and `learned_selfie` (issue 16) use a real-trained network, as the paper's CSE is:
MediaPipe selfie segmentation (selfie_prior.SelfiePrior, frozen; the training config's
`model.selfie_init` loads its converted weights), instead of or beside our CNN. z concatenates our
CNN's embedding (learned_selfie), one of the selfie network's decoder stages and its person
probability pooled to that grid; the full-resolution probability is one more input channel of the
fusion phi, and the mask is a correction of its person logits (HCDPModel.predict).
"""
from __future__ import annotations

import math

import torch
from torch import nn
import torch.nn.functional as F

from .config import PriorConfig, SELFIE_KINDS
from .preprocess import IMAGENET_MEAN, IMAGENET_STD
from .selfie_prior import FEATURES, SelfiePrior


# The selfie network's logits reach hundreds at sharp edges; capped at +-6 (p 0.0025..0.9975)
# the mask head can still overrule them (mask_logits = head + mask_gain * person logits).
PERSON_LOGIT_CAP = 6.0


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
    """E_prior and psi (eq. 4).

    forward(frames, size) -> (psi(z) at `size`, the selfie network's person logits [B,1,H,W] or
    None). `encoder` is our stage-0 CNN (kinds learned, fourier_uv, learned_selfie), `selfie` the
    real-trained network (kinds selfie, learned_selfie); z concatenates what they give.
    """

    def __init__(self, cfg: PriorConfig, features: int) -> None:
        super().__init__()
        self.kind = cfg.kind
        self.frequencies = cfg.fourier_frequencies
        z_dim = 0
        self.encoder = None
        if cfg.kind != "selfie":
            self.encoder = PriorEncoder(cfg)
            z_dim = cfg.embed_dim if cfg.kind != "fourier_uv" else 2 * 3 * cfg.fourier_frequencies
        self.selfie = None
        if cfg.kind in SELFIE_KINDS:
            self.selfie = SelfiePrior(cfg.selfie_feature).freeze()
            z_dim += FEATURES[cfg.selfie_feature][0] + 1
            self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1),
                                 persistent=False)
            self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1),
                                 persistent=False)
            # mask_logits = head + mask_gain * person logits (HCDPModel.predict)
            self.mask_gain = nn.Parameter(torch.ones(()))
        self.psi = nn.Conv2d(z_dim, features, 1)

    @property
    def person_channels(self) -> int:
        """Extra full-resolution channels this prior hands to the fusion phi (1 with selfie)."""
        return 1 if self.selfie is not None else 0

    def freeze_networks(self) -> None:
        """Freeze our prior CNN and the selfie network (psi and mask_gain stay trainable)."""
        for net in (self.encoder, self.selfie):
            if net is not None:
                net.requires_grad_(False)

    def embedding(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Normalised frames [B,3,H,W] -> (z [B,D,h,w], person logits [B,1,H,W] or None)."""
        parts, person = [], None
        if self.encoder is not None:
            z = self.encoder(x)
            if self.kind == "fourier_uv":
                z = fourier_features(self.encoder.head(z)[:, :3], self.frequencies)
            parts.append(z)
        if self.selfie is not None:
            rgb = (x * self.std.to(x.dtype) + self.mean.to(x.dtype)).clamp(0.0, 1.0)
            size = tuple((n + 31) // 32 * 32 for n in x.shape[-2:])  # SelfiePrior: multiples of 32
            if size != tuple(x.shape[-2:]):
                rgb = F.interpolate(rgb, size=size, mode="bilinear", align_corners=False)
            maps = self.selfie.forward_features(rgb)
            person = maps["logits"].clamp(-PERSON_LOGIT_CAP, PERSON_LOGIT_CAP)
            stride = FEATURES[self.selfie.feature][1]  # the feature grid divides the input
            feat = maps[self.selfie.feature]
            if parts:
                feat = F.interpolate(feat, size=parts[0].shape[-2:], mode="bilinear",
                                     align_corners=False)
            pooled = F.avg_pool2d(torch.sigmoid(person), stride)
            if pooled.shape[-2:] != feat.shape[-2:]:
                pooled = F.interpolate(pooled, size=feat.shape[-2:], mode="bilinear",
                                       align_corners=False)
            parts += [feat, pooled]
            if size != tuple(x.shape[-2:]):
                person = F.interpolate(person, size=x.shape[-2:], mode="bilinear",
                                       align_corners=False)
        return (torch.cat(parts, dim=1) if len(parts) > 1 else parts[0]), person

    def forward(self, x: torch.Tensor,
                size: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor | None]:
        """z~ = psi(z) at `size` (eq. 4), to be added to F_DPT (eq. 5), and the person logits."""
        z, person = self.embedding(x)
        z_tilde = F.interpolate(self.psi(z), size=size, mode="bilinear", align_corners=False)
        return z_tilde, person
