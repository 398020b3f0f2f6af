"""Evaluation metrics (paper appendix A.7, eqs. 15-24, and the video-matting metrics).

Also their aggregation over sequences and a dataset, and OpenCV DIS flow for data without
ground-truth flow.

The torch functions are batched over frames (`[B,C,H,W]`) and return one value per frame or pair
(`[B]`), NaN where the frame has no valid pixel. `evaluate_sequence` is the numpy entry point for a
whole sequence.

Metric names (`METRIC_NAMES`, the keys of every result):
- AbsRel, RMSE (eqs. 15-16): per frame, the GT depth is normalised to [0, 1] on the mask as the
  depth loss does (eq. 6) and the prediction is aligned to it by least squares
  (`align_scale_shift`). RMSE is in those normalised units. AbsRel divides by the depth, which is 0
  at the nearest pixel once normalised, so it is taken in the GT's own units: the aligned
  prediction is mapped back through the normalisation (least squares is affine-equivariant, so this
  equals aligning to the raw GT directly).
- AngleMean, AngleMedian (degrees), Within11.25/22.5/30 (percent, strict <) (eqs. 17-19).
- OPW, TC-RMSE (eqs. 20-21), TC-Mean, TC-Abs (degrees, eqs. 22-24) per adjacent pair (k, k+1), over
  M = mask_k & warp-valid & cycle-consistent (forward-backward check, `tau_c` px; skipped when no
  backward flow is given).
- IoU (masks binarised at 0.5; 1 when both are empty), SAD, MSE, dtSSD: the video-matting
  definitions (Erofeev et al., BMVC 2015) with the reporting scales of Lin et al. 2022 (RVM): SAD =
  sum |a_hat - a| / 1e3, MSE = mean (a_hat - a)^2 * 1e3, dtSSD = sqrt(mean ((a_hat_t - a_hat_{t-1})
  - (a_t - a_{t-1}))^2) * 1e2, all over every pixel of the frame.
"""
from __future__ import annotations

from collections import defaultdict
import math
from typing import Mapping

import cv2
from hcdp_model.geometry import (
    align_scale_shift,
    backward_warp,
    cosine_similarity,
    cycle_consistency_mask,
    full_precision,
    masked_min_max,
    normalise_min_max,
)
import numpy as np
import torch

DEPTH_METRICS = ("AbsRel", "RMSE")
NORMAL_METRICS = ("AngleMean", "AngleMedian", "Within11.25", "Within22.5", "Within30")
TEMPORAL_METRICS = ("OPW", "TC-RMSE", "TC-Mean", "TC-Abs")
MASK_METRICS = ("IoU", "SAD", "MSE", "dtSSD")
METRIC_NAMES = DEPTH_METRICS + NORMAL_METRICS + TEMPORAL_METRICS + MASK_METRICS
ANGLE_THRESHOLDS_DEG = (11.25, 22.5, 30.0)

Values = dict[str, torch.Tensor]


def _mean_over(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Per-sample mean of `x [B,1,H,W]` over bool `mask`; NaN where the mask is empty."""
    count = mask.flatten(1).sum(1)
    total = torch.where(mask, x, torch.zeros_like(x)).flatten(1).sum(1)
    return torch.where(count > 0, total / count.clamp_min(1), torch.full_like(total, math.nan))


@full_precision
def depth_errors(pred: torch.Tensor, gt: torch.Tensor, mask: torch.Tensor) -> Values:
    """Compute AbsRel and RMSE (eqs. 15-16) of relative depth `pred [B,1,H,W]` against GT depth.

    GT depth `gt [B,1,H,W]`, over bool `mask` (which must exclude invalid GT), after per-frame
    scale-shift alignment to the GT normalised to [0, 1] on the mask (see the module docstring).
    Returns {"AbsRel": [B], "RMSE": [B]}.
    """
    mask = mask.bool() & torch.isfinite(gt) & (gt > 0)
    gt = torch.where(mask, gt, torch.ones_like(gt))
    lo, hi = masked_min_max(gt, mask)
    rng = (hi - lo).clamp_min(1e-6).view(-1, 1, 1, 1)
    d = (gt - lo.view(-1, 1, 1, 1)) / rng
    s, t = align_scale_shift(pred, d, mask)
    aligned = s.view(-1, 1, 1, 1) * pred + t.view(-1, 1, 1, 1)
    rmse = _mean_over((aligned - d) ** 2, mask).sqrt()
    in_gt_units = aligned * rng + lo.view(-1, 1, 1, 1)
    abs_rel = _mean_over((in_gt_units - gt).abs() / gt, mask)
    return {"AbsRel": abs_rel, "RMSE": rmse}


@full_precision
def angular_error_deg(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Angle in degrees between the vectors of `a` and `b` `[B,3,H,W]`, as `[B,1,H,W]`.

    Each is normalised first.
    """
    cos = cosine_similarity(a, b)
    return torch.rad2deg(torch.acos(cos.clamp(-1.0, 1.0)))


@full_precision
def normal_errors(pred: torch.Tensor, gt: torch.Tensor, mask: torch.Tensor) -> Values:
    """Eqs. 17-19 over bool `mask [B,1,H,W]` for normals `[B,3,H,W]`.

    Mean and median angle (degrees; the median interpolates between the two middle values) and the
    percentage of pixels with angle < 11.25, 22.5, 30 degrees.
    """
    mask = mask.bool()
    angle = angular_error_deg(pred, gt)
    out = {"AngleMean": _mean_over(angle, mask)}
    medians = [
        torch.quantile(a[m], 0.5) if m.any() else a.new_tensor(math.nan) for a,
        m in zip(angle.flatten(1), mask.flatten(1))
    ]
    out["AngleMedian"] = torch.stack(medians)
    for threshold, name in zip(ANGLE_THRESHOLDS_DEG, NORMAL_METRICS[2:]):
        out[name] = 100.0 * _mean_over((angle < threshold).float(), mask)
    return out


def temporal_valid_mask(
    mask_k: torch.Tensor, flow_fwd: torch.Tensor, flow_bwd_next: torch.Tensor | None = None,
    tau_c: float = 1.0
) -> torch.Tensor:
    """Return the valid set M of eqs. 20-24 in frame k.

    `mask_k` (bool `[B,1,H,W]`) & the warp lands inside frame k+1 & (with the backward flow of
    frame k+1) the forward-backward cycle returns within `tau_c` pixels.
    """
    if flow_bwd_next is None:
        _, inside = backward_warp(mask_k.float(), flow_fwd)
        return mask_k.bool() & inside
    return mask_k.bool() & cycle_consistency_mask(flow_fwd, flow_bwd_next, tau_c)


@full_precision
def temporal_depth_errors(depth_k: torch.Tensor, depth_k1: torch.Tensor, flow_fwd: torch.Tensor,
                          valid: torch.Tensor) -> Values:
    """OPW (eq. 20) and TC-RMSE (eq. 21).

    |D_k - W(D_{k+1}, O_{k->k+1})| over `valid` `[B,1,H,W]`, mean and root-mean-square. Depth
    `[B,1,H,W]` in whatever units the caller aligned it to.
    """
    warped, _ = backward_warp(depth_k1, flow_fwd)
    diff = depth_k - warped
    return {"OPW": _mean_over(diff.abs(), valid.bool()),
            "TC-RMSE": _mean_over(diff * diff, valid.bool()).sqrt()}


@full_precision
def temporal_normal_errors(
    normal_k: torch.Tensor, normal_k1: torch.Tensor, flow_fwd: torch.Tensor, valid: torch.Tensor,
    gt_k: torch.Tensor | None = None, gt_k1: torch.Tensor | None = None,
) -> Values:
    """TC-Mean (eq. 22) and TC-Abs (eqs. 23-24).

    TC-Mean: mean angle between N_k and W(N_{k+1}, O_{k->k+1}); TC-Abs: mean |that angle - the same
    angle of the GT normals| (NaN without GT). Normals `[B,3,H,W]`, degrees.
    """
    valid = valid.bool()
    angle = angular_error_deg(normal_k, backward_warp(normal_k1, flow_fwd)[0])
    out = {"TC-Mean": _mean_over(angle, valid)}
    if gt_k is None or gt_k1 is None:
        out["TC-Abs"] = torch.full_like(out["TC-Mean"], math.nan)
    else:
        gt_angle = angular_error_deg(gt_k, backward_warp(gt_k1, flow_fwd)[0])
        out["TC-Abs"] = _mean_over((angle - gt_angle).abs(), valid)
    return out


@full_precision
def mask_errors(pred: torch.Tensor, gt: torch.Tensor) -> Values:
    """Compute IoU, SAD and MSE of soft masks `[B,1,H,W]`, over all pixels.

    IoU (both binarised at 0.5; 1 when both are empty), SAD (sum |a_hat - a| / 1e3) and MSE
    (mean (a_hat - a)^2 * 1e3).
    """
    p, g = pred > 0.5, gt > 0.5
    inter = (p & g).flatten(1).sum(1).float()
    union = (p | g).flatten(1).sum(1).float()
    diff = (pred - gt).flatten(1)
    return {
        "IoU": torch.where(union > 0, inter / union.clamp_min(1), torch.ones_like(union)),
        "SAD": diff.abs().sum(1) / 1e3,
        "MSE": (diff * diff).mean(1) * 1e3,
    }


@full_precision
def dtssd(pred_k: torch.Tensor, pred_k1: torch.Tensor, gt_k: torch.Tensor,
          gt_k1: torch.Tensor) -> torch.Tensor:
    """Compute dtSSD (Erofeev et al. 2015; x1e2 as RVM) of soft masks `[B,1,H,W]`, as `[B]`.

    sqrt(mean over pixels ((a_hat_{k+1} - a_hat_k) - (a_{k+1} - a_k))^2) * 100: temporal change of
    the matte that the GT does not have.
    """
    d = ((pred_k1 - pred_k) - (gt_k1 - gt_k)).flatten(1)
    return (d * d).mean(1).sqrt() * 1e2


def flow_opencv(prev_rgb: np.ndarray, next_rgb: np.ndarray) -> np.ndarray:
    """Optical flow prev -> next with OpenCV DIS (preset MEDIUM) on the grey images.

    `[H,W,2]` float32 pixels (dx, dy), so that prev(p) ~ next(p + flow(p)): the `flow_fwd`
    convention. Images uint8 `[H,W,3]` RGB or `[H,W]` grey, same size.
    """
    if (prev_rgb.shape != next_rgb.shape or prev_rgb.dtype != np.uint8
            or next_rgb.dtype != np.uint8):
        raise ValueError(
            f"expected two uint8 images of the same shape, got {prev_rgb.shape} {prev_rgb.dtype} "
            f"and {next_rgb.shape} {next_rgb.dtype}"
        )

    def grey(im: np.ndarray) -> np.ndarray:
        if im.ndim == 2:
            return np.ascontiguousarray(im)
        if im.ndim == 3 and im.shape[2] == 3:
            return cv2.cvtColor(np.ascontiguousarray(im), cv2.COLOR_RGB2GRAY)
        raise ValueError(f"expected an image [H,W,3] or [H,W], got {im.shape}")

    dis = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM)
    return dis.calc(grey(prev_rgb), grey(next_rgb), None).astype(np.float32)


def clip_flows(frames: np.ndarray | list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """DIS flows (`flow_opencv`) of a clip of T images `[H,W,3]` (or `[T,H,W,3]`).

    `(flow_fwd, flow_bwd)`, each `[T,H,W,2]`, in the dataset contract: fwd[t] maps t -> t+1,
    bwd[t] maps t -> t-1, zeros where the neighbour is outside the clip.
    """
    t = len(frames)
    h, w = frames[0].shape[:2]
    fwd, bwd = np.zeros((t, h, w, 2), np.float32), np.zeros((t, h, w, 2), np.float32)
    for k in range(t - 1):
        fwd[k] = flow_opencv(frames[k], frames[k + 1])
        bwd[k + 1] = flow_opencv(frames[k + 1], frames[k])
    return fwd, bwd


def _chw(x: np.ndarray, channels: int) -> torch.Tensor:
    """Convert numpy [T,H,W] or [T,H,W,C] -> float32 tensor [T,C,H,W]."""
    x = np.asarray(x, dtype=np.float32)
    t = torch.from_numpy(np.ascontiguousarray(x))
    if channels == 1:
        if x.ndim != 3:
            raise ValueError(f"expected a sequence [T,H,W], got {x.shape}")
        return t.unsqueeze(1)
    if x.ndim != 4 or x.shape[-1] != channels:
        raise ValueError(f"expected a sequence [T,H,W,{channels}], got {x.shape}")
    return t.permute(0, 3, 1, 2)


def _sequence_depth(pred: torch.Tensor, gt: torch.Tensor | None,
                    region: torch.Tensor) -> torch.Tensor:
    """Depth `[T,1,H,W]` in one unit for the whole sequence, for the temporal metrics.

    With GT, aligned by one (s, t) per sequence to the GT normalised to [0, 1] over the sequence,
    so scale or shift changing between frames counts as flicker (a per-frame alignment would hide
    it); without GT, the prediction minus its minimum, divided by its range, over the region.
    """
    if gt is None:
        lo, hi = masked_min_max(pred[None], region[None])
        # shifted first: a constant map is exactly 0
        return (pred - lo) / (hi - lo).clamp_min(1e-6)
    gate = region & torch.isfinite(gt) & (gt > 0)
    g = torch.where(gate, normalise_min_max(torch.nan_to_num(gt)[None], gate[None])[0],
                    torch.zeros_like(gt))
    s, t = align_scale_shift(pred[None], g[None], gate[None])
    return s * pred + t


@torch.no_grad()
def evaluate_sequence(
    pred_depth: np.ndarray, pred_normal: np.ndarray, pred_mask: np.ndarray, flow_fwd: np.ndarray,
    gt_depth: np.ndarray | None = None, gt_normal: np.ndarray | None = None,
    gt_mask: np.ndarray | None = None,
    flow_bwd: np.ndarray | None = None, tau_c: float = 1.0,
) -> dict[str, np.ndarray]:
    """Compute every metric of one sequence of T frames.

    Frame metrics as arrays of T values, pair metrics (OPW, TC-*, dtSSD) as arrays of T-1 values
    (pair k = frames k, k+1), NaN where undefined.

    Arrays as in the common contract: depth `[T,H,W]` (GT NaN or 0 where invalid), normals
    `[T,H,W,3]`, masks `[T,H,W]`, flows `[T,H,W,2]` (`flow_fwd[k]`: k -> k+1; `flow_bwd[k]`: k ->
    k-1; ground truth or `flow_opencv`). The evaluation region is the GT mask > 0.5, or the
    predicted one without GT. Metrics that need a missing GT (depth, normals, mask) are left out of
    the result.
    """
    depth, normal, mask = _chw(pred_depth, 1), _chw(pred_normal, 3), _chw(pred_mask, 1)
    fwd = _chw(flow_fwd, 2)
    bwd = _chw(flow_bwd, 2) if flow_bwd is not None else None
    g_depth = _chw(gt_depth, 1) if gt_depth is not None else None
    g_normal = _chw(gt_normal, 3) if gt_normal is not None else None
    g_mask = _chw(gt_mask, 1) if gt_mask is not None else None
    if (not (depth.shape[0] == normal.shape[0] == mask.shape[0] == fwd.shape[0])
            or depth.shape[0] < 1):
        raise ValueError(
            f"expected sequences of equal length T >= 1, got depth {depth.shape[0]}, normals "
            f"{normal.shape[0]}, mask {mask.shape[0]}, flow {fwd.shape[0]}"
        )
    region = (g_mask if g_mask is not None else mask) > 0.5
    out: dict[str, torch.Tensor] = {}
    if g_depth is not None:
        out.update(depth_errors(depth, g_depth, region))
    if g_normal is not None:
        out.update(normal_errors(normal, g_normal, region))
    if g_mask is not None:
        out.update(mask_errors(mask, g_mask))
    if depth.shape[0] > 1:
        valid = temporal_valid_mask(region[:-1], fwd[:-1], bwd[1:] if bwd is not None else None,
                                    tau_c)
        seq_depth = _sequence_depth(depth, g_depth, region)
        out.update(temporal_depth_errors(seq_depth[:-1], seq_depth[1:], fwd[:-1], valid))
        gk, gk1 = (g_normal[:-1], g_normal[1:]) if g_normal is not None else (None, None)
        out.update(temporal_normal_errors(normal[:-1], normal[1:], fwd[:-1], valid, gk, gk1))
        if g_mask is not None:
            out["dtSSD"] = dtssd(mask[:-1], mask[1:], g_mask[:-1], g_mask[1:])
    if g_normal is None:
        out.pop("TC-Abs", None)
    return {name: out[name].numpy() for name in METRIC_NAMES if name in out}


class MetricAccumulator:
    """Collects per-frame and per-pair metric values by sequence and aggregates them.

    Every metric is first computed per frame (or per adjacent pair) over that frame's valid pixels;
    the dataset value is the mean over all frames (pairs) of all sequences, each frame weighing the
    same (so long sequences weigh more than short ones; `sequence_summary` gives each sequence's
    own mean). NaN values (a frame without valid pixels) are skipped and not counted.
    """

    def __init__(self) -> None:
        self._values: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))

    def add(self, values: Mapping[str, float | np.ndarray | torch.Tensor],
            sequence: str = "") -> None:
        """Add one frame's values (scalars) or a sequence's.

        A sequence's values are arrays, e.g. `evaluate_sequence`'s result.
        """
        for name, value in values.items():
            flat = np.asarray(value.detach().cpu() if torch.is_tensor(value) else value,
                              dtype=np.float64).ravel()
            self._values[sequence][name].extend(float(v) for v in flat[np.isfinite(flat)])

    def _merged(self) -> dict[str, list[float]]:
        merged: dict[str, list[float]] = defaultdict(list)
        for per_metric in self._values.values():
            for name, values in per_metric.items():
                merged[name].extend(values)
        return merged

    @staticmethod
    def _ordered(values: Mapping[str, list[float]]) -> dict[str, float]:
        names = [n for n in METRIC_NAMES if n in values] + sorted(n for n in values
                                                                  if n not in METRIC_NAMES)
        return {n: float(np.mean(values[n])) if values[n] else math.nan for n in names}

    def summary(self) -> dict[str, float]:
        """Dataset means, frame-weighted, keys in `METRIC_NAMES` order (then any others)."""
        return self._ordered(self._merged())

    def counts(self) -> dict[str, int]:
        """How many finite frame (pair) values each dataset mean averages."""
        return {name: len(values) for name, values in self._merged().items()}

    def sequence_summary(self) -> dict[str, dict[str, float]]:
        """Per-sequence means."""
        return {seq: self._ordered(per_metric) for seq, per_metric in self._values.items()}
