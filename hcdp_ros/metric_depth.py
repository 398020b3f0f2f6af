"""Relative → metric depth: least-squares scale and shift on the human mask against an RGB-D depth.

The network's depth d is affine-invariant, so a registered metric depth image D (REP 118: metres,
NaN where the sensor has no reading) gives ``s, t = argmin Σ_i m_i (s·d_i + t − D_i)²`` over the
masked pixels with a valid reading — the same alignment the depth loss and metrics use (paper eq.
6, :func:`hcdp_model.geometry.align_scale_shift`). The node publishes ``s·d + t`` in metres inside
the mask and NaN outside it.
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
from hcdp_model.geometry import align_scale_shift
from hcdp_ros.conversions import InvalidDepth
import numpy as np
import torch


@dataclass(frozen=True)
class MetricFit:
    """``metric = scale × relative + shift`` fitted on ``pixels`` masked pixels."""

    scale: float
    shift: float
    pixels: int


def registered_to(metric: np.ndarray, height: int, width: int) -> np.ndarray:
    """Return the metric depth at the colour image's size.

    Nearest neighbour, so no depth is invented across edges; the depth must already be registered
    to the colour camera.
    """
    if metric.shape == (height, width):
        return metric
    return cv2.resize(metric, (width, height), interpolation=cv2.INTER_NEAREST)


def _as_batch(image: np.ndarray) -> torch.Tensor:
    """H×W numpy -> [1, 1, H, W] float32 tensor."""
    return torch.from_numpy(np.ascontiguousarray(image, dtype=np.float32))[None, None]


def fit_metric_depth(relative: np.ndarray, metric: np.ndarray, mask: np.ndarray, threshold: float,
                     min_pixels: int, topic: str) -> MetricFit:
    """Fit scale/shift of ``relative`` to ``metric`` where mask > threshold.

    ``metric`` is H×W metres, NaN/0 = no reading.

    Raises :class:`InvalidDepth` when fewer than ``min_pixels`` masked pixels have a finite,
    positive reading, or when the fit is degenerate (scale <= 0: metric depth must grow with
    relative depth).
    """
    if not relative.shape == metric.shape == mask.shape:
        raise ValueError(
            f"expected relative, metric depth and mask of one shape, got {relative.shape}, "
            f"{metric.shape}, {mask.shape}"
        )
    valid = (mask > threshold) & np.isfinite(metric) & (metric > 0) & np.isfinite(relative)
    count = int(valid.sum())
    if count < min_pixels:
        raise InvalidDepth(
            f"expected at least {min_pixels} masked pixels with a valid metric depth, got "
            f"{count}", topic
        )
    # zero the unused pixels: a NaN times weight 0 would still poison the sums
    s, t = align_scale_shift(_as_batch(np.where(valid, relative, 0.0)),
                             _as_batch(np.where(valid, metric, 0.0)),
                             torch.from_numpy(valid)[None, None])
    fit = MetricFit(float(s[0]), float(t[0]), count)
    if not (np.isfinite(fit.scale) and np.isfinite(fit.shift) and fit.scale > 0):
        raise InvalidDepth(f"expected a positive finite scale from the fit, got s={fit.scale:g} "
                           f"t={fit.shift:g}",
                           topic)
    return fit


def apply_metric(relative: np.ndarray, fit: MetricFit, mask: np.ndarray,
                 threshold: float) -> np.ndarray:
    """``scale × relative + shift`` in metres where mask > threshold and the result is > 0.

    NaN elsewhere.
    """
    metric = (relative * np.float32(fit.scale) + np.float32(fit.shift)).astype(np.float32,
                                                                               copy=False)
    metric[~((mask > threshold) & (metric > 0))] = np.nan
    return metric
