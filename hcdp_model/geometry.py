"""Image-plane geometry shared by the losses, the metrics and the node.

Flow warping, the forward-backward cycle check, least-squares scale/shift alignment, min-max
normalisation on a mask, and the discrete image derivatives (Sobel, Laplacian) and morphology
(dilate, erode) the losses use.

Conventions (see the common contract): images are `[B, C, H, W]`, flow is `[B, 2, H, W]` in pixels
(dx, dy), masks are `[B, 1, H, W]` bool or float weights. All maths runs in float32, also under
autocast.
"""
from __future__ import annotations

import functools
from typing import Callable, TypeVar

import torch
import torch.nn.functional as F

Fn = TypeVar("Fn", bound=Callable)

# Sample positions this far (in pixels) outside the image still count as inside: absorbs float
# rounding.
_BORDER_TOLERANCE_PX = 1e-3


def full_precision(fn: Fn) -> Fn:
    """Run `fn` with autocast disabled and its floating-point tensor arguments cast to float32.

    Least squares, normalisation by small ranges and bilinear warping lose too much in
    bf16/fp16.
    """

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        tensors = [a for a in (*args, *kwargs.values()) if torch.is_tensor(a)]
        device_type = tensors[0].device.type if tensors else "cpu"

        def cast(a):
            return a.float() if torch.is_tensor(a) and a.is_floating_point() else a

        with torch.autocast(device_type=device_type, enabled=False):
            return fn(*(cast(a) for a in args), **{k: cast(v) for k, v in kwargs.items()})

    return wrapper  # type: ignore[return-value]


def _check_image_pair(x: torch.Tensor, flow: torch.Tensor) -> None:
    if x.dim() != 4 or flow.dim() != 4 or flow.shape[1] != 2:
        raise ValueError(f"expected x [B,C,H,W] and flow [B,2,H,W], got x {tuple(x.shape)} and "
                         f"flow {tuple(flow.shape)}")
    if x.shape[0] != flow.shape[0] or x.shape[-2:] != flow.shape[-2:]:
        raise ValueError(f"x {tuple(x.shape)} and flow {tuple(flow.shape)} must share batch size "
                         "and H, W")


@full_precision
def backward_warp(x: torch.Tensor, flow: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Bilinear backward warp: `warped(p) = x(p + flow(p))`.

    The paper's W(x, O) (eqs. 12, 13, 20-24).
    `backward_warp(pred_{k+1}, flow_fwd_k)` is frame k+1 aligned to frame k. Pixel centres are at
    integer coordinates (align_corners=True). Returns `(warped [B,C,H,W], valid [B,1,H,W] bool)`,
    valid false where the sample position falls outside the image (there `warped` holds the border
    value).
    """
    _check_image_pair(x, flow)
    _, _, h, w = x.shape
    ys, xs = torch.meshgrid(
        torch.arange(h, device=x.device, dtype=x.dtype),
        torch.arange(w, device=x.device, dtype=x.dtype), indexing="ij"
    )
    px = xs + flow[:, 0]  # [B, H, W] sample positions in pixels
    py = ys + flow[:, 1]
    grid = torch.stack((2.0 * px / max(w - 1, 1) - 1.0, 2.0 * py / max(h - 1, 1) - 1.0), dim=-1)
    warped = F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=True)
    tol = _BORDER_TOLERANCE_PX
    valid = (px >= -tol) & (px <= w - 1 + tol) & (py >= -tol) & (py <= h - 1 + tol)
    return warped, valid.unsqueeze(1)


@full_precision
def cycle_consistency_mask(flow_ab: torch.Tensor, flow_ba: torch.Tensor,
                           tau_c: float) -> torch.Tensor:
    """Forward-backward cycle check M_cyc (sec. 3.3.2).

    M_cyc = 1(||O_{a->b}(x) + O_{b->a}(x + O_{a->b}(x))||_2 <= tau_c).
    Following a pixel of frame a to frame b and back must land within `tau_c` pixels of where it
    started; pixels that become occluded in b (or leave the image) fail. Returns bool `[B,1,H,W]`
    in frame a.
    """
    back, valid = backward_warp(flow_ba, flow_ab)
    return valid & ((flow_ab + back).square().sum(1, keepdim=True) <= tau_c * tau_c)


@full_precision
def cosine_similarity(a: torch.Tensor, b: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """Cosine of the angle between the vectors along dim 1 of `a`, `b` `[B,C,H,W]`: `[B,1,H,W]`.

    The product of the lengths is clamped to `eps**2`, so a zero vector gives 0, never NaN. (Plain
    sums: torch's vector norm over dim 1 is an order of magnitude slower on CPU.)
    """
    dot = (a * b).sum(1, keepdim=True)
    norms = ((a * a).sum(1, keepdim=True) * (b * b).sum(1, keepdim=True)).clamp_min(eps**4)
    return dot * torch.rsqrt(norms)


def _flat_weights(mask: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    if mask.shape != like.shape:
        raise ValueError(f"mask {tuple(mask.shape)} must have the shape of the data "
                         f"{tuple(like.shape)}")
    return mask.to(like.dtype).flatten(1)


@full_precision
def align_scale_shift(
    pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor, ridge: float = 1e-8
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-sample least squares `argmin_{s,t} sum_i m_i (s * pred_i + t - target_i)^2`.

    Eq. 6, after Birk et al.
    Shapes `[B, ...]` (e.g. `[B,1,H,W]`, or `[B,T,1,H,W]` for one s, t per clip); `mask` bool or
    float weights. Closed form on mean-centred data, `s = cov(pred, target) / (var(pred) + ridge)`,
    `t` from the means: exact up to the ridge, which only keeps `s` finite (0) for a constant
    prediction. An empty mask gives s = t = 0. Returns `(s, t)`, each `[B]`.
    """
    if pred.shape != target.shape:
        raise ValueError(f"pred {tuple(pred.shape)} and target {tuple(target.shape)} must have "
                         "the same shape")
    m = _flat_weights(mask, pred)
    p, g = pred.flatten(1), target.flatten(1)
    n = m.sum(1).clamp_min(1e-12)
    p_mean = (m * p).sum(1) / n
    g_mean = (m * g).sum(1) / n
    pc, gc = p - p_mean[:, None], g - g_mean[:, None]
    var = (m * pc * pc).sum(1) / n
    cov = (m * pc * gc).sum(1) / n
    s = cov / (var + ridge)
    return s, g_mean - s * p_mean


@full_precision
def masked_min_max(x: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-sample minimum and maximum of `x [B, ...]` over `mask` (bool, same shape).

    0, 0 for an empty mask.
    """
    keep = mask.bool()
    if keep.shape != x.shape:
        raise ValueError(f"mask {tuple(keep.shape)} must have the shape of the data "
                         f"{tuple(x.shape)}")
    lo = torch.where(keep, x, torch.inf).flatten(1).amin(1)
    hi = torch.where(keep, x, -torch.inf).flatten(1).amax(1)
    has = keep.flatten(1).any(1)
    zero = torch.zeros_like(lo)
    return torch.where(has, lo, zero), torch.where(has, hi, zero)


@full_precision
def normalise_min_max(x: torch.Tensor, mask: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """Map `x [B, ...]` to [0, 1] per sample by its min and max over `mask`.

    (x - min) / (max - min), the paper's depth normalisation (sec. 3.3.1). The range is clamped to
    `eps`; values off the mask are not clipped.
    """
    lo, hi = masked_min_max(x, mask)
    shape = (-1,) + (1,) * (x.dim() - 1)
    return (x - lo.view(shape)) / (hi - lo).clamp_min(eps).view(shape)


def _padded(x: torch.Tensor) -> torch.Tensor:
    """Pad `x [B,C,H,W]` with a one-pixel replicated border: [B,C,H+2,W+2]."""
    if x.dim() != 4:
        raise ValueError(f"expected an image batch [B,C,H,W], got {tuple(x.shape)}")
    return F.pad(x, (1, 1, 1, 1), mode="replicate")


# The 3x3 stencils are written as shifted slices: depthwise conv2d is several times slower on CPU.
@full_precision
def sobel(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Sobel derivatives (the paper's nabla, eq. 8) of `x [B,C,H,W]` per channel.

    Scaled by 1/8 so that they are per-pixel slopes: on `a*x + b*y` they give exactly (a, b) away
    from the border. Returns `(d/dx, d/dy)`, each `[B,C,H,W]`; borders replicated.
    """
    p = _padded(x)
    dx = p[..., :, 2:] - p[..., :, :-2]  # [B,C,H+2,W] central differences along x
    dy = p[..., 2:, :] - p[..., :-2, :]  # [B,C,H,W+2]
    gx = (dx[..., :-2, :] + 2.0 * dx[..., 1:-1, :] + dx[..., 2:, :]) / 8.0
    gy = (dy[..., :-2] + 2.0 * dy[..., 1:-1] + dy[..., 2:]) / 8.0
    return gx, gy


@full_precision
def laplacian(x: torch.Tensor) -> torch.Tensor:
    """Five-point discrete Laplacian (the paper's Delta, eq. 8) of `x [B,C,H,W]` per channel.

    Exactly 2 on x^2 and 4 on x^2 + y^2 away from the border; borders replicated.
    """
    p = _padded(x)
    return p[..., :-2, 1:-1] + p[..., 2:, 1:-1] + p[..., 1:-1, :-2] + p[..., 1:-1, 2:] - 4.0 * x


def _check_window(size: int) -> None:
    if size < 1 or size % 2 == 0:
        raise ValueError(f"expected an odd window size >= 1, got {size}")


def dilate(mask: torch.Tensor, size: int) -> torch.Tensor:
    """Binary dilation of a bool `[B,1,H,W]` mask by a `size` x `size` square (odd size)."""
    _check_window(size)
    return F.max_pool2d(mask.float(), size, stride=1, padding=size // 2) > 0.5


def erode(mask: torch.Tensor, size: int) -> torch.Tensor:
    """Binary erosion of a bool `[B,1,H,W]` mask by a `size` x `size` square.

    Outside the image counts as inside the mask, so only the mask's own boundary is eaten.
    """
    return ~dilate(~mask.bool(), size)
