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

The selfie network sees only the image, not preprocess()'s letterbox bands: `content_box` finds
the bands in the frame itself (they are exactly 0 after normalisation, which no uint8 pixel is),
the content is resampled to the network's input, and its maps are put back into the box (bands:
no person, zero features). The network's global poolings would otherwise average the flat grey
bands in (on a grey-scale photo it then marked nobody: docs/evaluation.md). Square frames have no
bands and the resampling is the identity. All of it is tensor work with static shapes, so the
exported graph serves any camera size.
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


def content_box(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Normalised frames [B,3,H,W] -> where the image sits, as (centre, half-size) [B,2] (x, y).

    In grid_sample's normalised coordinates (align_corners=False: -1 and 1 are the frame's outer
    edges). A row or column is a band when every pixel of it is exactly 0 in all channels, as
    preprocess() pads; a frame with no bands (or nothing but bands) gives centre 0, half-size 1.
    """
    content = (x != 0).any(1)  # [B,H,W]
    spans = []
    for lines in (content.any(1), content.any(2)):  # columns (x), rows (y): [B,W], [B,H]
        n = lines.shape[-1]
        lines = lines.to(x.dtype)
        first = lines.argmax(-1)  # the first 1 (argmax returns the first maximum); 0 if none
        end = n - lines.flip(-1).argmax(-1)
        spans.append(((first + end).to(x.dtype) / n - 1.0, (end - first).to(x.dtype) / n))
    centre = torch.stack([spans[0][0], spans[1][0]], -1)
    half = torch.stack([spans[0][1], spans[1][1]], -1)
    return centre, half


def resample(src: torch.Tensor, offset: torch.Tensor, scale: torch.Tensor,
             size: tuple[int, int], inset: tuple[float, float] | None = None) -> torch.Tensor:
    """Bilinear samples of src [B,C,h,w] on a size grid [B,C,*size].

    The output's normalised point u reads src at offset + scale * u (offset, scale [B,2] in
    (x, y); zeros outside src). With `inset` (x, y), the points are clamped to
    [offset - scale + inset, offset + scale - inset]: half a pixel keeps them on the pixel
    centres of the region read.
    """
    axes = []
    for i, n in enumerate((size[1], size[0])):  # x over the width, y over the height
        u = (torch.arange(n, device=src.device, dtype=src.dtype) + 0.5) * (2.0 / n) - 1.0
        g = offset[:, i, None] + scale[:, i, None] * u[None]
        if inset is not None:
            reach = scale[:, i, None] - inset[i]
            g = torch.minimum(torch.maximum(g, offset[:, i, None] - reach),
                              offset[:, i, None] + reach)
        axes.append(g)
    gx = axes[0][:, None, :].expand(-1, size[0], -1)
    gy = axes[1][:, :, None].expand(-1, -1, size[1])
    grid = torch.stack([gx, gy], dim=-1)
    return F.grid_sample(src, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


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
            self.zooms = tuple(cfg.selfie_zooms)
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
            person, feat = self.selfie_maps(x, parts[0].shape[-2:] if parts else None)
            stride = FEATURES[self.selfie.feature][1]
            pooled = F.avg_pool2d(torch.sigmoid(person), stride)
            if pooled.shape[-2:] != feat.shape[-2:]:
                pooled = F.interpolate(pooled, size=feat.shape[-2:], mode="bilinear",
                                       align_corners=False)
            parts += [feat, pooled]
        return (torch.cat(parts, dim=1) if len(parts) > 1 else parts[0]), person

    def selfie_maps(self, x: torch.Tensor, grid: tuple[int, int] | None
                    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Normalised frames [B,3,H,W] -> capped person logits [B,1,H,W] and features on `grid`.

        `grid` defaults to the network's own feature grid (its input size / stride). The network
        runs on the letterbox content only (`content_box`), stretched to its input size: H and W
        times each zoom (prior.selfie_zooms), rounded up to multiples of 32; its maps go back into
        the box. The person logits are the maximum over the zooms, the features the first zoom's.
        """
        h, w = x.shape[-2:]
        centre, half = content_box(x)
        rgb = (x * self.std.to(x.dtype) + self.mean.to(x.dtype)).clamp(0.0, 1.0)
        back, inverse = -centre / half, 1.0 / half  # frame point v reads the box at (v - c) / s
        cap = PERSON_LOGIT_CAP  # bands: no person (-cap), zero features
        person = feat = None
        for zoom in self.zooms:
            # SelfiePrior: multiples of 32
            size = (math.ceil(h * zoom / 32) * 32, math.ceil(w * zoom / 32) * 32)
            # sample points stay on the content's pixel centres: no band colour blends in at its
            # edge
            maps = self.selfie.forward_features(resample(rgb, centre, half, size,
                                                         inset=(1.0 / w, 1.0 / h)))
            logits = resample(maps["logits"].clamp(-cap, cap) + cap, back, inverse, (h, w)) - cap
            person = logits if person is None else torch.maximum(person, logits)
            if feat is None:
                stride = FEATURES[self.selfie.feature][1]
                feat = resample(maps[self.selfie.feature], back, inverse,
                                grid or (size[0] // stride, size[1] // stride))
        return person, feat

    def forward(self, x: torch.Tensor,
                size: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor | None]:
        """z~ = psi(z) at `size` (eq. 4), to be added to F_DPT (eq. 5), and the person logits."""
        z, person = self.embedding(x)
        z_tilde = F.interpolate(self.psi(z), size=size, mode="bilinear", align_corners=False)
        return z_tilde, person
