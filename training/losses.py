"""The paper's training losses (sec. 3.3, eqs. 6-14) and VDA's temporal gradient matching loss.

Every loss is a pure function of tensors and a `LossConfig`; each returns a scalar (with grad) and,
for the composite ones, a dict of its named terms (detached, for logging). All maths runs in
float32 even under autocast, and an empty mask gives 0 (with grad), never NaN.

Shapes: single frames `[B,C,H,W]`; clips `[B,T,C,H,W]`. Model outputs: `depth` (>= 0, relative),
`normal` (unit), `mask_logits`. Targets follow the dataset contract: `depth` (0 where invalid),
`normal`, `mask` (soft, [0, 1]), `flow_fwd` (frame t -> t+1) and `flow_bwd` (t -> t-1).

Supervision gate: depth and normal terms only see pixels with `mask > mask_threshold` (0.5: the
soft GT mask binarised at its midpoint, i.e. where the pixel is more human than background), and
depth terms additionally need `depth > 0`.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, NamedTuple

from hcdp_model.geometry import (
    align_scale_shift,
    backward_warp,
    cosine_similarity,
    cycle_consistency_mask,
    dilate,
    erode,
    full_precision,
    laplacian,
    masked_min_max,
    normalise_min_max,
    sobel,
)
import torch
import torch.nn.functional as F

TEMPORAL_LOSSES = ("flow", "tgm")
BACKDROP_CAP = 4.0  # backdrop_loss: the most one background pixel is charged
# ground_order_loss: pixel pairs this far apart (a share of the image height: 8 and 24 px at 224),
# down the columns and along the rows
GROUND_PAIR_OFFSETS = (1 / 28, 3 / 28)
GROUND_EQUAL = 0.01  # ... a pair whose GT depths differ by less than 1 % lies at one depth
GROUND_FORMS = ("rank", "shape")
GROUND_CAP = 4.0  # ground_shape_loss: the most one pixel is charged, in mean absolute deviations


@dataclass
class LossConfig:
    """Every weight and threshold of the losses.

    Paper values (Tables 18/19) for the lambdas; the values the paper leaves open are our
    documented choices.
    """

    lambda_depth: float = 1.0  # lambda_d, eq. 11
    lambda_normal: float = 0.1  # lambda_n, eq. 11 (Tables 18/19)
    lambda_seg: float = 0.05  # lambda_s, eq. 11 (Tables 18/19)
    lambda_temp_depth: float = 1.0  # lambda^d_temp, eq. 14 (Table 19)
    lambda_temp_normal: float = 0.1  # lambda^n_temp, eq. 14 (Table 19)
    # "flow": the paper's eqs. 12-13; "tgm": VDA's temporal gradient matching instead (Table 12
    # comparison).
    temporal: str = "flow"
    # replaces lambda^d_temp when temporal == "tgm"; same weight, like for like
    lambda_tgm: float = 1.0
    # Eq. 6: omega_grad; the L2 and gradient terms have similar magnitudes on [0,1]-normalised
    # depth.
    omega_grad: float = 1.0
    # Hu et al. 2019 log-gradient term ln(1 + |grad e| / a); a = 0.5 as in Hu et al.
    grad_log_alpha: float = 0.5
    # Eq. 8 edge weight w_edge = 1 + eta * normalised ||grad N||: GT normal edges count up to 2x.
    eta: float = 1.0
    alpha: float = 1.0  # eq. 9 weight of the edge-weighted Sobel-gradient term
    beta: float = 0.5  # eq. 9 weight of the multi-scale Laplacian term
    # Eq. 8 Laplacian at these downsampling factors (average pooling); the term is their mean.
    laplacian_scales: tuple[int, ...] = (1, 2, 4)
    mask_threshold: float = 0.5  # GT soft mask > this gates depth/normal supervision
    tau_c: float = 1.0  # cycle-consistency threshold in pixels (sec. 3.3.2)
    # Depth edges E_k: Sobel slope of the prediction, normalised by its range on the region, above
    # this (a jump of 10% of the human's depth range within one pixel: occlusion boundaries and the
    # silhouette; smooth body surfaces stay well below it at our training resolutions of >= 128
    # px).
    edge_threshold: float = 0.1
    edge_dilation: int = 5  # Dilate(E_k) square size in pixels (2 px each side)
    # TGM: pixels whose GT depth change (clip-normalised to [0,1]) is below this are supervised
    # (VDA: 0.05).
    tgm_threshold: float = 0.05
    # Backdrop term (hcdp's, not the paper's; issue 16): our renders put a person in front of a
    # flat photograph, so the background is a fronto-parallel plane behind the person. 0 = off
    # (the paper supervises depth on people only).
    lambda_backdrop: float = 0.0
    # ... the plane lies at least this far behind the person's farthest point, in units of the
    # person's depth range (the person's GT depth is normalised to [0, 1]).
    backdrop_gap: float = 0.5
    # ... background = GT mask <= 0.05 outside the person dilated by this square (odd, pixels)
    backdrop_dilation: int = 9
    # Ground term (hcdp's; issue 16): where a render has the ground people stand on (hcdp synth
    # --ground-share), the prediction orders the ground and the people on it as the GT depth
    # does (ground_order_loss). 0 = off; the backdrop term then leaves the ground alone.
    lambda_ground: float = 0.0
    # ... softness of the ordering, in units of the prediction's spread over the supervised pixels
    ground_tau: float = 0.1
    # ... "rank": ground_order_loss (pairs ordered as the GT orders them); "shape":
    # ground_shape_loss (the map over the person and the ground matches the GT up to scale and
    # shift)
    ground_form: str = "rank"

    def __post_init__(self) -> None:
        self.laplacian_scales = tuple(int(s) for s in self.laplacian_scales)
        if self.temporal not in TEMPORAL_LOSSES:
            raise ValueError(f"LossConfig.temporal: expected one of {TEMPORAL_LOSSES}, got "
                             f"{self.temporal!r}")
        if not self.laplacian_scales or min(self.laplacian_scales) < 1:
            raise ValueError("LossConfig.laplacian_scales: expected positive integers, got "
                             f"{self.laplacian_scales}")
        if self.backdrop_dilation < 1 or self.backdrop_dilation % 2 == 0:
            raise ValueError("LossConfig.backdrop_dilation: expected an odd size >= 1, got "
                             f"{self.backdrop_dilation}")
        if self.edge_dilation < 1 or self.edge_dilation % 2 == 0:
            raise ValueError("LossConfig.edge_dilation: expected an odd size >= 1, got "
                             f"{self.edge_dilation}")
        for name in ("lambda_depth", "lambda_normal", "lambda_seg", "lambda_temp_depth",
                     "lambda_temp_normal",
                     "lambda_tgm", "omega_grad", "eta", "alpha", "beta", "tau_c", "edge_threshold",
                     "tgm_threshold", "lambda_backdrop", "backdrop_gap", "lambda_ground"):
            if getattr(self, name) < 0:
                raise ValueError(f"LossConfig.{name}: expected >= 0, got {getattr(self, name)}")
        if self.ground_form not in GROUND_FORMS:
            raise ValueError(f"LossConfig.ground_form: expected one of {GROUND_FORMS}, got "
                             f"{self.ground_form!r}")
        if self.ground_tau <= 0:
            raise ValueError(f"LossConfig.ground_tau: expected > 0, got {self.ground_tau}")
        if self.grad_log_alpha <= 0:
            raise ValueError(f"LossConfig.grad_log_alpha: expected > 0, got {self.grad_log_alpha}")
        if not 0.0 <= self.mask_threshold < 1.0:
            raise ValueError("LossConfig.mask_threshold: expected in [0, 1), got "
                             f"{self.mask_threshold}")


Terms = dict[str, torch.Tensor]


def _per_sample_mean(x: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean of `x [N, ...]` over the bool `mask` per sample: `(means [N], non-empty [N])`.

    Off-mask values are replaced, not multiplied, so they cannot leak NaN or inf.
    """
    keep = mask.expand_as(x)
    total = torch.where(keep, x, torch.zeros_like(x)).flatten(1).sum(1)
    count = keep.flatten(1).sum(1)
    return total / count.clamp_min(1), count > 0


def _batch_mean(values: torch.Tensor, has: torch.Tensor) -> torch.Tensor:
    """Mean of per-sample values over the samples that have any valid pixel.

    0 (with grad) if none has.
    """
    return torch.where(has, values, torch.zeros_like(values)).sum() / has.sum().clamp_min(1)


def _masked_mean(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Per-sample mean over `mask`, then mean over the samples with a non-empty mask."""
    return _batch_mean(*_per_sample_mean(x, mask))


def _check_same_shape(**tensors: torch.Tensor) -> None:
    shapes = {name: tuple(t.shape) for name, t in tensors.items()}
    if len(set(shapes.values())) != 1:
        raise ValueError(f"expected equal shapes, got {shapes}")


def person_alignment(pred: torch.Tensor, target: torch.Tensor, gate: torch.Tensor
                     ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Return (d, s, t): the person's GT depth in [0, 1] and the fit of `pred` to it.

    d is the target normalised to [0, 1] on the gate (0 off it); (s, t) [B] the least-squares
    scale and shift aligning `pred` to d there (`align_scale_shift`).
    """
    d = torch.where(gate, normalise_min_max(target, gate), torch.zeros_like(target))
    s, t = align_scale_shift(pred, d, gate)
    return d, s, t


@full_precision
def depth_loss(pred: torch.Tensor, target: torch.Tensor, gate: torch.Tensor,
               cfg: LossConfig) -> tuple[torch.Tensor, Terms]:
    """Eq. 6: L_depth = ||s D + t - d||_2 + omega_grad * L_grad(s D + t, d).

    `pred` `[B,1,H,W]` relative depth, `target` `[B,1,H,W]` GT depth, `gate` bool `[B,1,H,W]`. The
    target is normalised per image to [0, 1] on the gate (sec. 3.3.1), (s, t) is the closed-form
    least-squares fit on the gate (`align_scale_shift`).
    - L2 term: the L2 norm of the residual over the gate divided by sqrt(|gate|), i.e. the
      per-image RMSE (the quantity eq. 15 evaluates); the norm rather than its square keeps the
      paper's lambda balance.
    - Gradient term, the form of Hu et al. 2019 ("Revisiting single image depth estimation", WACV):
      mean over the gate eroded by 3x3 of ln(1 + |d/dx e| / a) + ln(1 + |d/dy e| / a), e the
      aligned residual, Sobel derivatives, a = `grad_log_alpha`. Hu et al. write ln(|.| + a); we
      subtract ln a, which changes no gradient and makes the term 0 for a perfect prediction.
    Per-image values are averaged over the images with a non-empty gate.
    """
    _check_same_shape(pred=pred, target=target, gate=gate)
    gate = gate.bool()
    d, s, t = person_alignment(pred, target, gate)
    err = s.view(-1, 1, 1, 1) * pred + t.view(-1, 1, 1, 1) - d
    mse, has = _per_sample_mean(err * err, gate)
    l2 = _batch_mean(torch.sqrt(mse + 1e-12), has)
    ex, ey = sobel(err)
    a = cfg.grad_log_alpha
    grad = _masked_mean(torch.log1p(ex.abs() / a) + torch.log1p(ey.abs() / a), erode(gate, 3))
    total = l2 + cfg.omega_grad * grad
    return total, {"depth": total.detach(), "depth_l2": l2.detach(), "depth_grad": grad.detach()}


@full_precision
def backdrop_loss(pred: torch.Tensor, target: torch.Tensor, gate: torch.Tensor,
                  mask: torch.Tensor, cfg: LossConfig,
                  ground: torch.Tensor | None = None) -> torch.Tensor:
    """Ask the background to be a flat backdrop behind the person (hcdp's term, not the paper's).

    `pred` `[B,1,H,W]` relative depth, `target` the GT depth, `gate` the depth gate (person
    pixels with depth), `mask` the soft GT mask. With (s, t) the least-squares fit of `pred` to
    the person's [0, 1]-normalised GT depth on the gate (as in `depth_loss`, here held fixed), the
    aligned background d = s * pred + t should be flat and behind the person:
        mean_bg relu(1 + backdrop_gap - d) + mean_bg |d - median_bg(d)|
    bg = mask <= 0.05 outside the person dilated by `backdrop_dilation`. The plane's distance is
    not known (only that it is behind), so the median is the prediction's own, without gradient.
    Each pixel's charge is capped at BACKDROP_CAP (4 person depth ranges), so an image whose
    person is predicted nearly flat (huge s) cannot dominate a batch. Images without a gate or
    background count 0. `ground` (GT ground depth, > 0 where seen) is left out of the background:
    it is no backdrop, and `ground_order_loss` supervises it.
    """
    _check_same_shape(pred=pred, target=target, gate=gate, mask=mask)
    gate = gate.bool()
    background = ~dilate(mask > 0.05, cfg.backdrop_dilation)
    if ground is not None:
        background = background & ~(ground > 0)
    with torch.no_grad():
        _, s, t = person_alignment(pred, target, gate)
    aligned = s.view(-1, 1, 1, 1) * pred + t.view(-1, 1, 1, 1)
    has_gate = gate.flatten(1).any(1).view(-1, 1, 1, 1)
    region = background & has_gate
    with torch.no_grad():
        level = torch.where(region, aligned, torch.nan).flatten(1).nanmedian(1).values
        level = torch.nan_to_num(level).view(-1, 1, 1, 1)
    behind = F.relu(1.0 + cfg.backdrop_gap - aligned)
    # each pixel's charge is capped: early in training a nearly flat person gives a huge s
    cost = (behind + (aligned - level).abs()).clamp_max(BACKDROP_CAP)
    return _masked_mean(cost, region)


def ground_order_loss(pred: torch.Tensor, target: torch.Tensor, gate: torch.Tensor,
                      ground: torch.Tensor, cfg: LossConfig) -> torch.Tensor:
    """Order the ground and the people on it as the GT depth does (hcdp's term, not the paper's).

    `pred` `[B,1,H,W]` relative depth, `target` the GT depth of the person on `gate` (its depth
    gate), `ground` the GT depth of the ground where it is seen (0 elsewhere). A pixel is known
    where either is; z is its GT depth. Pairs: each known pixel and the known pixel k rows below,
    and k columns to its right, for k in GROUND_PAIR_OFFSETS x H, with the ground on at least one
    side (person-person pairs are the depth loss's). With Delta = (p_b - p_a) / sigma, sigma the
    spread (std) of the prediction over the known pixels (no gradient), so the term is
    invariant to the prediction's scale and shift:
        ordered pair (|ln z_b / z_a| >= GROUND_EQUAL): tau softplus(-sign(z_b - z_a) Delta / tau)
        pair at one depth:                              |Delta|
    the ranking loss of Chen et al. 2016 ("Single-image depth perception in the wild") on dense
    pairs, tau = `ground_tau`. A ground seen from above recedes up the image and is level along
    its rows (planar depth, no camera roll): the pairs teach both, and that people stand in front
    of the ground behind them. Mean over each image's pairs, averaged over images with pairs; 0
    without any.
    """
    _check_same_shape(pred=pred, target=target, gate=gate, ground=ground)
    on_ground, known, z = _ground_pixels(target, gate, ground)
    z = z.clamp_min(1e-6)  # positive where known
    log_z = torch.where(known, z.log(), torch.zeros_like(z))
    with torch.no_grad():  # the std over the known pixels, per image
        n = known.flatten(1).sum(1).clamp_min(2)
        values = torch.where(known, pred, torch.zeros_like(pred)).flatten(1)
        mean = values.sum(1) / n
        spread = torch.where(known.flatten(1), values - mean[:, None], torch.zeros_like(values))
        sigma = (spread.square().sum(1) / (n - 1)).sqrt().clamp_min(1e-3).view(-1, 1, 1, 1)
    p = pred / sigma
    tau = cfg.ground_tau
    total = pred.new_zeros(pred.shape[0])
    count = pred.new_zeros(pred.shape[0])
    h = pred.shape[-2]
    for share in GROUND_PAIR_OFFSETS:
        k = max(1, round(share * h))
        for dim in (2, 3):
            if pred.shape[dim] <= k:
                continue
            n = pred.shape[dim] - k

            def first(x: torch.Tensor) -> torch.Tensor:
                return x.narrow(dim, 0, n)

            def second(x: torch.Tensor) -> torch.Tensor:
                return x.narrow(dim, k, n)

            valid = (first(known) & second(known)
                     & (first(on_ground) | second(on_ground)))
            log_ratio = second(log_z) - first(log_z)
            delta = second(p) - first(p)
            ordered = log_ratio.abs() >= GROUND_EQUAL
            rank = tau * F.softplus(-torch.sign(log_ratio) * delta / tau)
            cost = torch.where(ordered, rank, delta.abs())
            total = total + torch.where(valid, cost, torch.zeros_like(cost)).flatten(1).sum(1)
            count = count + valid.flatten(1).sum(1)
    return _batch_mean(total / count.clamp_min(1), count > 0)


def _ground_pixels(target: torch.Tensor, gate: torch.Tensor, ground: torch.Tensor
                   ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Return (on_ground, known, z) for the ground terms, all [B,1,H,W].

    on_ground: the ground seen outside the person's gate; known: the gate or the ground; z: the
    GT depth there (the person's on the gate, the ground's elsewhere).
    """
    gate = gate.bool()
    on_ground = (ground > 0) & ~gate
    return on_ground, gate | on_ground, torch.where(gate, target, ground)


def _median_deviation_units(x: torch.Tensor, region: torch.Tensor) -> torch.Tensor:
    """(x - median) / mean |x - median| over `region`, per image (MiDaS's scale and shift)."""
    values = torch.where(region, x, torch.full_like(x, float("nan"))).flatten(1)
    median = torch.nan_to_num(values.nanmedian(1).values).view(-1, 1, 1, 1)
    deviation, _ = _per_sample_mean((x - median).abs(), region)
    return (x - median) / deviation.clamp_min(1e-6).view(-1, 1, 1, 1)


def ground_shape_loss(pred: torch.Tensor, target: torch.Tensor, gate: torch.Tensor,
                      ground: torch.Tensor, cfg: LossConfig) -> torch.Tensor:
    """Match the map over the person and the ground to the GT up to scale and shift (hcdp's term).

    Arguments as `ground_order_loss`. Over the known pixels (the person's gate and the ground),
    prediction and GT depth are each put in units of their own median and mean absolute deviation
    (MiDaS's scale- and shift-invariant normalisation; gradients flow through the prediction's),
    and each pixel is charged |p' - z'|, capped at GROUND_CAP (the far ground's z' runs to tens).
    Mean over each image's known pixels, averaged over images with ground in view; 0 without any.
    The person's own detail is the depth loss's; this term places the person on the ground and
    gives the ground its shape.
    """
    _check_same_shape(pred=pred, target=target, gate=gate, ground=ground)
    on_ground, known, z = _ground_pixels(target, gate, ground)
    cost = (_median_deviation_units(pred, known) - _median_deviation_units(z, known)).abs()
    per_image, _ = _per_sample_mean(cost.clamp_max(GROUND_CAP), known)
    return _batch_mean(per_image, on_ground.flatten(1).any(1))


def _edge_weight(target: torch.Tensor, inner: torch.Tensor, eta: float) -> torch.Tensor:
    """Edge weight w_edge = 1 + eta * (||grad N|| - min) / (max - min) (sec. 3.3.1), [B,1,H,W].

    min/max per image over `inner`; a constant target gives w = 1.
    """
    gx, gy = sobel(target)
    magnitude = torch.sqrt((gx * gx + gy * gy).sum(1, keepdim=True))
    return 1.0 + eta * normalise_min_max(magnitude, inner).clamp(0.0, 1.0)


@full_precision
def normal_loss(pred: torch.Tensor, target: torch.Tensor, gate: torch.Tensor,
                cfg: LossConfig) -> tuple[torch.Tensor, Terms]:
    """Eqs. 7-9: L_normal = L_base + alpha * L^n_grad + beta * L_lap.

    `pred`, `target` `[B,3,H,W]` unit normals, `gate` bool `[B,1,H,W]`.
    - L_base (eq. 7): per pixel ||N - N_hat||_1 (summed over x, y, z) + 1 - cos(N, N_hat), mean
      over the gate.
    - L^n_grad (eq. 8): w_edge * sum over channels of |Sobel_x(N_hat - N)| + |Sobel_y(N_hat - N)|,
      mean over the gate eroded by 3x3 (so no derivative reads a background pixel).
    - L_lap (eq. 8, multi-scale): w_edge * sum over channels of |Lap(N_hat) - Lap(N)|, at each
      factor of `laplacian_scales` (normals, w_edge average-pooled; the gate kept where all pooled
      pixels are inside, then eroded), averaged over the scales that fit the image (at least 3
      pooled pixels a side).
    """
    _check_same_shape(pred=pred, target=target)
    gate = gate.bool()
    if gate.shape != pred.shape[:1] + (1,) + pred.shape[2:]:
        raise ValueError(f"gate {tuple(gate.shape)} must be [B,1,H,W] for normals "
                         f"{tuple(pred.shape)}")
    cos = cosine_similarity(pred, target)
    base = _masked_mean((pred - target).abs().sum(1, keepdim=True) + (1.0 - cos), gate)

    # Sobel, Laplacian and average pooling are linear: nabla(N_hat) - nabla(N) = nabla(N_hat - N),
    # etc.
    err = pred - target
    inner = erode(gate, 3)
    w_edge = _edge_weight(target, inner, cfg.eta)
    ex, ey = sobel(err)
    grad = _masked_mean(w_edge * (ex.abs() + ey.abs()).sum(1, keepdim=True), inner)

    lap_terms = []
    for s in cfg.laplacian_scales:
        if min(pred.shape[-2:]) < 3 * s:
            continue
        e, w = (F.avg_pool2d(x, s) for x in (err, w_edge))
        inside = erode(F.avg_pool2d(gate.float(), s) > 1.0 - 1e-6, 3)
        lap_terms.append(_masked_mean(w * laplacian(e).abs().sum(1, keepdim=True), inside))
    lap = torch.stack(lap_terms).mean() if lap_terms else pred.sum() * 0.0

    total = base + cfg.alpha * grad + cfg.beta * lap
    return total, {
        "normal": total.detach(), "normal_base": base.detach(), "normal_grad": grad.detach(),
        "normal_lap": lap.detach(),
    }


@full_precision
def seg_loss(mask_logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Eq. 10: binary cross-entropy of the soft GT mask S against sigmoid(logits).

    Mean over all pixels. We subtract the target's own entropy H(S) (a constant), i.e.
    return the KL divergence: same gradient as the BCE, and 0 exactly when sigmoid(logits) = S,
    also for soft targets.
    """
    _check_same_shape(mask_logits=mask_logits, target=target)
    target = target.clamp(0.0, 1.0)
    bce = F.binary_cross_entropy_with_logits(mask_logits, target, reduction="none")
    entropy = -(torch.xlogy(target, target) + torch.xlogy(1.0 - target, 1.0 - target))
    return (bce - entropy).mean()


def _get(obj: Any, name: str) -> torch.Tensor:
    """Get a field of the model's output or of a batch: a mapping key or an attribute."""
    value = obj[name] if isinstance(obj, Mapping) else getattr(obj, name, None)
    if value is None:
        raise KeyError(f"expected a tensor named {name!r} in {type(obj).__name__}")
    return value


def _optional(obj: Any, name: str) -> torch.Tensor | None:
    """Return a field of a batch that older data lacks (`ground_depth`), or None."""
    try:
        return _get(obj, name)
    except KeyError:
        return None


def _frames(x: torch.Tensor) -> torch.Tensor:
    """[B,T,C,H,W] -> [B*T,C,H,W]; [B,C,H,W] unchanged."""
    return x.flatten(0, 1) if x.dim() == 5 else x


def supervision_gates(batch: Any, cfg: LossConfig) -> tuple[torch.Tensor, torch.Tensor]:
    """Return the GT gates `(depth gate, normal gate)`, bool, shaped like the GT mask.

    mask > mask_threshold, and for depth also depth > 0 (the dataset writes 0 where depth is
    invalid).
    """
    region = _get(batch, "mask") > cfg.mask_threshold
    return region & (_get(batch, "depth") > 0), region


def stage1_loss(pred: Any, batch: Any, cfg: LossConfig) -> tuple[torch.Tensor, Terms]:
    """Eq. 11: L_stage1 = lambda_d L_depth + lambda_n L_normal + lambda_s L_seg.

    `pred`: the model's output (mapping or attributes `depth`, `normal`, `mask_logits`), `batch`:
    the dataset batch (`depth`, `normal`, `mask`); single frames `[B,C,H,W]` or clips `[B,T,C,H,W]`
    (every frame counts once). Returns `(total, terms)` with terms depth*, normal*, seg, stage1 and
    total.
    """
    depth_gate, normal_gate = (_frames(g) for g in supervision_gates(batch, cfg))
    l_depth, terms = depth_loss(_frames(_get(pred, "depth")), _frames(_get(batch, "depth")),
                                depth_gate, cfg)
    l_normal, normal_terms = normal_loss(_frames(_get(pred, "normal")),
                                         _frames(_get(batch, "normal")), normal_gate, cfg)
    l_seg = seg_loss(_frames(_get(pred, "mask_logits")), _frames(_get(batch, "mask")))
    total = cfg.lambda_depth * l_depth + cfg.lambda_normal * l_normal + cfg.lambda_seg * l_seg
    ground = _optional(batch, "ground_depth")
    ground = None if ground is None else _frames(ground)
    if cfg.lambda_backdrop > 0:
        l_bg = backdrop_loss(_frames(_get(pred, "depth")), _frames(_get(batch, "depth")),
                             depth_gate, _frames(_get(batch, "mask")), cfg, ground)
        total = total + cfg.lambda_backdrop * l_bg
        terms = {**terms, "backdrop": l_bg.detach()}
    if cfg.lambda_ground > 0 and ground is not None:
        term = ground_order_loss if cfg.ground_form == "rank" else ground_shape_loss
        l_ground = term(_frames(_get(pred, "depth")), _frames(_get(batch, "depth")), depth_gate,
                        ground, cfg)
        total = total + cfg.lambda_ground * l_ground
        terms = {**terms, "ground": l_ground.detach()}
    summary = total.detach()
    return total, {**terms, **normal_terms, "seg": l_seg.detach(), "stage1": summary,
                   "total": summary}


class PairMasks(NamedTuple):
    """The valid sets M = M_cyc & M_edge (& region) of each adjacent pair (k, k+1).

    Both `[B,T-1,1,H,W]` bool: `k` in frame k's pixel grid (compares frame k with frame k+1 warped
    by O_{k->k+1}), `k1` in frame k+1's grid (frame k+1 with frame k warped by O_{k+1->k}).
    """

    k: torch.Tensor
    k1: torch.Tensor


def _check_clip(x: torch.Tensor) -> None:
    if x.dim() != 5 or x.shape[1] < 2:
        raise ValueError(f"expected a clip [B,T,C,H,W] with T >= 2, got {tuple(x.shape)}")


def _pairs(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Clip [B,T,...] -> (frames k, frames k+1), each [B*(T-1),...]."""
    _check_clip(x)
    return x[:, :-1].flatten(0, 1), x[:, 1:].flatten(0, 1)


def _pair_flows(flow_fwd: torch.Tensor, flow_bwd: torch.Tensor) -> tuple[torch.Tensor,
                                                                         torch.Tensor]:
    """Return (O_{k->k+1} = flow_fwd of frame k, O_{k+1->k} = flow_bwd of frame k+1).

    Each is [B*(T-1),2,H,W].
    """
    return _pairs(flow_fwd)[0], _pairs(flow_bwd)[1]


@full_precision
def depth_edge_mask(depth: torch.Tensor, threshold: float, dilation: int,
                    region: torch.Tensor | None = None) -> torch.Tensor:
    """Dilate(E_k) of sec. 3.3.2, bool `[N,1,H,W]`.

    E_k is where the Sobel slope of the predicted depth, divided by the depth's range (max - min
    over `region`, else the whole image; affine-invariant), exceeds `threshold`; it is then dilated
    by a `dilation` square. The silhouette is an edge too.
    """
    with torch.no_grad():
        depth = depth.detach()
        lo, hi = masked_min_max(depth,
                                torch.ones_like(depth, dtype=torch.bool) if region is None
                                else region)
        gx, gy = sobel(depth)
        slope = torch.sqrt(gx * gx + gy * gy) / (hi - lo).clamp_min(1e-6).view(-1, 1, 1, 1)
        return dilate(slope > threshold, dilation)


def temporal_masks(
    depth: torch.Tensor, flow_fwd: torch.Tensor, flow_bwd: torch.Tensor, cfg: LossConfig,
    region: torch.Tensor | None = None,
) -> PairMasks:
    """Compute M = M_cyc & M_edge for every adjacent pair of a clip (sec. 3.3.2).

    From the predicted depth `[B,T,1,H,W]` and the flows `[B,T,2,H,W]`. With `region` (bool
    `[B,T,1,H,W]`, the GT human mask in supervised training, the predicted one on unlabeled video)
    M is also restricted to it, since depth and normals are only supervised on the human. The paper
    writes one M for both directions; each direction lives in its own frame's pixel grid, so each
    gets its own cycle check and its own frame's edges.
    """
    b, t = depth.shape[:2]
    with torch.no_grad():
        d_k, d_k1 = _pairs(depth.detach())
        fwd, bwd = _pair_flows(flow_fwd, flow_bwd)
        r_k, r_k1 = _pairs(region.bool()) if region is not None else (None, None)
        m_k = (cycle_consistency_mask(fwd, bwd, cfg.tau_c)
               & ~depth_edge_mask(d_k, cfg.edge_threshold, cfg.edge_dilation, r_k))
        m_k1 = (cycle_consistency_mask(bwd, fwd, cfg.tau_c)
                & ~depth_edge_mask(d_k1, cfg.edge_threshold, cfg.edge_dilation, r_k1))
        if region is not None:
            m_k, m_k1 = m_k & r_k, m_k1 & r_k1
    return PairMasks(m_k.unflatten(0, (b, t - 1)), m_k1.unflatten(0, (b, t - 1)))


def _valid_frames(masks: PairMasks, t: int) -> torch.Tensor:
    """Per frame `[B,T,1,H,W]`: the pixels some pair's valid set compares.

    M_k as frame k, M_k1 as frame k+1.
    """
    b = masks.k.shape[0]
    valid = torch.zeros((b, t) + masks.k.shape[2:], dtype=torch.bool, device=masks.k.device)
    valid[:, :-1] |= masks.k.bool()
    valid[:, 1:] |= masks.k1.bool()
    return valid


def _mean_abs_deviation(x: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """Per clip `[B]`: the mean absolute deviation of `x [B,T,1,H,W]` from its mean on `valid`."""
    centre, _ = _per_sample_mean(x, valid)
    return _per_sample_mean((x - centre.view(-1, 1, 1, 1, 1)).abs(), valid)[0]


def _spread_over_range(reference: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """Per clip `[B]`: the mean absolute deviation of `reference`, divided by its range.

    Over `valid` (and finite) pixels, divided by its max - min there; 0 for a clip whose reference
    is flat or has no such pixel.
    """
    _check_same_shape(reference=reference, valid=valid)
    valid = valid & torch.isfinite(reference)
    ref = torch.where(valid, reference, torch.zeros_like(reference))
    hi = torch.where(valid, ref, torch.full_like(ref, -torch.inf)).flatten(1).amax(1)
    lo = torch.where(valid, ref, torch.full_like(ref, torch.inf)).flatten(1).amin(1)
    span = torch.where(valid.flatten(1).any(1), hi - lo, torch.zeros_like(hi))
    return _mean_abs_deviation(ref, valid) / span.clamp_min(1e-6)


@full_precision
def temporal_depth_loss(
    depth: torch.Tensor, flow_fwd: torch.Tensor, flow_bwd: torch.Tensor, masks: PairMasks,
    reference: torch.Tensor | None = None,
) -> torch.Tensor:
    """Eq. 12, the temporal depth loss.

    (1/|M|) ||M (D_k - W(D_{k+1}, O_{k->k+1}))||_1 + (1/|M|) ||M (D_{k+1} - W(D_k,
    O_{k+1->k}))||_1.

    `depth` `[B,T,1,H,W]`, flows `[B,T,2,H,W]`, `masks` from `temporal_masks`. Relative depth has a
    free scale and shift, and the stage-1 loss is blind to both, so eq. 12 on raw depth would
    reward shrinking the depth's contrast. We divide each clip's depth by its mean absolute
    deviation over the pixels M compares (every frame's pixels in some pair's M), in the graph: the
    term is scale- and shift-invariant and no pixel outside M can move it. Two normalisers we tried
    first were gamed in training: the clip's min-max range over the human (a few pixels outside M
    went to extreme depths, the rest was squeezed into a fraction of the range) and that range held
    constant (the network shrank the contrast of the whole map). M is already restricted to the
    human by `temporal_masks`.

    Units: `reference` `[B,T,1,H,W]` (no gradient; the GT depth in supervised training, the frozen
    teacher's depth on unlabeled video; non-finite pixels ignored) puts the term in the units eq. 6
    fits the prediction to, the reference's range = 1: the MAD-normalised depth is multiplied by
    the reference's MAD / (max - min) over the same pixels, a per-clip constant of the data
    (0.11-0.19 on generated clips). Without it the term is in MAD units, 5-9x larger, and at the
    paper's weights (Table 19) it outweighs the normal and mask terms. Mean per pair and direction,
    averaged over the pairs with a non-empty M.
    """
    _check_same_shape(depth=depth[:, :, :1], flow=flow_fwd[:, :, :1], flow_bwd=flow_bwd[:, :, :1])
    valid = _valid_frames(masks, depth.shape[1])
    scale = 1.0 / _mean_abs_deviation(depth, valid).clamp_min(1e-6)
    if reference is not None:
        scale = scale * _spread_over_range(reference.detach(), valid)
    d_k, d_k1 = _pairs(depth * scale.view(-1, 1, 1, 1, 1))
    fwd, bwd = _pair_flows(flow_fwd, flow_bwd)
    d_k1_at_k, _ = backward_warp(d_k1, fwd)
    d_k_at_k1, _ = backward_warp(d_k, bwd)
    return _masked_mean((d_k - d_k1_at_k).abs(), masks.k.flatten(0, 1)) + _masked_mean(
        (d_k1 - d_k_at_k1).abs(), masks.k1.flatten(0, 1)
    )


@full_precision
def temporal_normal_loss(normal: torch.Tensor, flow_fwd: torch.Tensor, flow_bwd: torch.Tensor,
                         masks: PairMasks) -> torch.Tensor:
    """Eq. 13, the temporal normal loss.

    (1/|M|) M (1 - cos<N_k, W(N_{k+1}, O_{k->k+1})>) + (1/|M|) M (1 - cos<N_{k+1},
    W(N_k, O_{k+1->k})>).

    `normal` `[B,T,3,H,W]`. Eq. 13 as printed warps N_k with O_{k->k+1}; with backward warping that
    samples frame k at frame k+1's positions, so we pair the warps as in eq. 12 (each frame against
    its neighbour brought into its own grid). Mean per pair and direction over M.
    """
    n_k, n_k1 = _pairs(normal)
    fwd, bwd = _pair_flows(flow_fwd, flow_bwd)
    n_k1_at_k, _ = backward_warp(n_k1, fwd)
    n_k_at_k1, _ = backward_warp(n_k, bwd)
    cos_k = cosine_similarity(n_k, n_k1_at_k)
    cos_k1 = cosine_similarity(n_k1, n_k_at_k1)
    return _masked_mean(1.0 - cos_k, masks.k.flatten(0, 1)) + _masked_mean(1.0 - cos_k1,
                                                                           masks.k1.flatten(0, 1))


@full_precision
def tgm_loss(depth: torch.Tensor, target: torch.Tensor, gate: torch.Tensor,
             cfg: LossConfig) -> torch.Tensor:
    """Temporal gradient matching (Video Depth Anything, Chen et al., CVPR 2025, sec. 3.2).

    Match the prediction's frame-to-frame depth change to the GT's at the same pixel (no flow),
    where the GT change is small.

    `depth`, `target` `[B,T,1,H,W]`, `gate` bool `[B,T,1,H,W]`. As in VDA, the prediction is
    aligned with one (s, t) per clip; here the target is normalised to [0, 1] per clip on the gate
    (per-frame normalisation would itself change between frames). For each pair: mean over gate_k &
    gate_{k+1} & |g_{k+1} - g_k| < `tgm_threshold` of |(d_{k+1} - d_k) - (g_{k+1} - g_k)| (signed
    changes, as VDA's released loss; one temporal stride, no trimming), averaged over the pairs
    with a non-empty set.
    """
    _check_same_shape(depth=depth, target=target, gate=gate)
    _check_clip(depth)
    gate = gate.bool()
    g = torch.where(gate, normalise_min_max(target, gate), torch.zeros_like(target))
    s, t = align_scale_shift(depth, g, gate)
    d = s.view(-1, 1, 1, 1, 1) * depth + t.view(-1, 1, 1, 1, 1)
    dd, dg = d[:, 1:] - d[:, :-1], g[:, 1:] - g[:, :-1]
    valid = gate[:, 1:] & gate[:, :-1] & (dg.abs() < cfg.tgm_threshold)
    return _masked_mean((dd - dg).abs().flatten(0, 1), valid.flatten(0, 1))


def stage2_loss(pred: Any, batch: Any, cfg: LossConfig) -> tuple[torch.Tensor, Terms]:
    """Eq. 14: L_stage2 = L_stage1 + lambda^d_temp L^d_temp + lambda^n_temp L^n_temp.

    On clips `[B,T,C,H,W]` (batch adds `flow_fwd`, `flow_bwd`). The temporal valid sets are
    restricted to the GT human mask. With `cfg.temporal == "tgm"` both flow terms are replaced by
    lambda_tgm * L_TGM (VDA, depth only; Table 12).
    """
    total, terms = stage1_loss(pred, batch, cfg)
    depth = _get(pred, "depth")
    depth_gate, region = supervision_gates(batch, cfg)
    if cfg.temporal == "tgm":
        l_tgm = tgm_loss(depth, _get(batch, "depth"), depth_gate, cfg)
        total = total + cfg.lambda_tgm * l_tgm
        return total, {**terms, "tgm": l_tgm.detach(), "total": total.detach()}
    flow_fwd, flow_bwd = _get(batch, "flow_fwd"), _get(batch, "flow_bwd")
    masks = temporal_masks(depth, flow_fwd, flow_bwd, cfg, region)
    gt_depth = torch.where(depth_gate, _get(batch, "depth"), torch.full_like(depth, torch.nan))
    l_td = temporal_depth_loss(depth, flow_fwd, flow_bwd, masks, reference=gt_depth)
    l_tn = temporal_normal_loss(_get(pred, "normal"), flow_fwd, flow_bwd, masks)
    total = total + cfg.lambda_temp_depth * l_td + cfg.lambda_temp_normal * l_tn
    return total, {**terms, "temp_depth": l_td.detach(), "temp_normal": l_tn.detach(),
                   "total": total.detach()}
