"""Task heads H: relative depth (>= 0, larger = farther), unit normals, mask logits.

Two depth-head layouts (`decoder.depth_head`):
  hcdp            a conv head on the fused features, like the normal and mask heads; softplus.
  depth_anything  Depth Anything V2's head on F'_DPT (`output_conv1`, bilinear upsampling
                  with align_corners=True, `output_conv2` ending in ReLU), so its released
                  weights map one to one; it predicts relative inverse depth q >= 0 (larger =
                  nearer), which a fixed transform turns into our convention:
                  depth = 1 / (q + INVERSE_DEPTH_EPS).
                  A zero-initialised 1x1 conv `fused` adds the fused features (CNN branch, CWA) to
                  the upsampled map, so a converted model computes exactly the source's depth until
                  training moves it.
"""
from __future__ import annotations

import torch
from torch import nn
import torch.nn.functional as F

# Bounds depth at 1 / eps = 10 where the source predicts q = 0 (sky, far background), and the
# sensitivity |d depth / d q| at 1 / eps^2 = 100, so float rounding in q (e.g. export vs eager)
# stays far below the depth tolerances; small next to Depth Anything V2's q of a near person
# (its raw outputs are O(1-10)).
INVERSE_DEPTH_EPS = 0.1
# Depth Anything V2 uses 32 channels after output_conv1 for every model size.
DA_HEAD_CHANNELS = 32


def _head(cin: int, hidden: int, cout: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, hidden, 3, padding=1), nn.ReLU(),
                         nn.Conv2d(hidden, cout, 1))


def unit(v: torch.Tensor, dim: int = 1, eps: float = 1e-6) -> torch.Tensor:
    """L2-normalise along `dim`. Same as F.normalize, whose norm kernel is far slower on CPU."""
    return v / (v * v).sum(dim, keepdim=True).sqrt().clamp_min(eps)


def depth_from_inverse(q: torch.Tensor) -> torch.Tensor:
    """Relative inverse depth q >= 0 (larger = nearer) -> relative depth > 0 (larger = farther).

    If q = a / z + b (affine-invariant inverse depth, a > 0), this gives z / (a + (b + eps) z):
    exactly depth up to scale when b + eps = 0, otherwise a monotone but not affine function of z,
    whose departure from affine grows with the depth range (small over one person). Our losses and
    metrics align scale and shift in depth, so stage-1 training learns the rest.
    """
    return 1.0 / (q + INVERSE_DEPTH_EPS)


class DepthAnythingDepthHead(nn.Module):
    """Depth Anything V2's `scratch.output_conv1` / `scratch.output_conv2`, plus `fused`."""

    def __init__(self, features: int, channels: int) -> None:
        super().__init__()
        half = features // 2
        self.output_conv1 = nn.Conv2d(features, half, 3, padding=1)
        self.output_conv2 = nn.Sequential(
            nn.Conv2d(half, DA_HEAD_CHANNELS, 3, padding=1), nn.ReLU(),
            nn.Conv2d(DA_HEAD_CHANNELS, 1, 1), nn.ReLU())
        self.fused = nn.Conv2d(channels, half, 1)
        nn.init.zeros_(self.fused.weight)
        nn.init.zeros_(self.fused.bias)

    def inverse_depth(self, f_dpt: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """F'_DPT [B, features, 8g, 8g], fused features x [B, channels, S, S] -> q [B, 1, S, S]."""
        h = F.interpolate(self.output_conv1(f_dpt), size=x.shape[-2:], mode="bilinear",
                          align_corners=True)
        return self.output_conv2(h + self.fused(x))

    def forward(self, f_dpt: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        return depth_from_inverse(self.inverse_depth(f_dpt, x))


class Heads(nn.Module):
    def __init__(self, channels: int, hidden: int, depth_head: str = "hcdp",
                 features: int = 0) -> None:
        super().__init__()
        self.layout = depth_head
        if depth_head == "depth_anything":
            self.depth = DepthAnythingDepthHead(features, channels)
        else:
            self.depth = _head(channels, hidden, 1)
        self.normal = _head(channels, hidden, 3)
        self.mask = _head(channels, hidden, 1)

    def forward(self, x: torch.Tensor, f_dpt: torch.Tensor | None = None
                ) -> dict[str, torch.Tensor]:
        """x: fused features [B, channels, S, S]; f_dpt: F'_DPT (for the depth_anything head)."""
        if self.layout == "depth_anything":
            depth = self.depth(f_dpt, x)
        else:
            depth = F.softplus(self.depth(x))
        return {
            "depth": depth,
            "normal": unit(self.normal(x)),
            "mask_logits": self.mask(x),
        }
