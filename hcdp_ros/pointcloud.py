"""The masked human as 3-D points in the camera optical frame, from planar depth and the pinhole K.

Depth scale option (documented in docs/ros.md): the network's depth is relative (affine-invariant,
unit-less), so the node backprojects ``z = depth_scale × relative depth`` by default — a shape up
to an unknown scale and shift, good for viewing. With metric alignment on, ``z`` is the metric
depth (metres, REP 118) and the cloud is metric.
"""
from __future__ import annotations

import numpy as np


def backproject(depth: np.ndarray, mask: np.ndarray, k: np.ndarray, threshold: float = 0.5,
                stride: int = 1, colors: np.ndarray | None = None) -> tuple[np.ndarray,
                                                                            np.ndarray | None]:
    """Points ``X = z · K⁻¹ [u, v, 1]ᵀ`` of the pixels with mask > threshold and z > 0.

    Every ``stride``-th pixel is taken.

    ``depth`` is planar z (H×W), ``k`` the 3×3 intrinsics in pixels (pixel centres at integer
    coordinates, the ROS convention). Returns ``(points [N,3] float32, colors [N,3] uint8 or
    None)`` in the camera optical frame (x right, y down, z forward), row-major pixel order.
    """
    depth = np.asarray(depth)
    if depth.ndim != 2 or np.shape(mask) != depth.shape:
        raise ValueError(f"expected depth and mask of one H×W shape, got {depth.shape} and "
                         f"{np.shape(mask)}")
    if stride < 1:
        raise ValueError(f"stride: expected >= 1, got {stride}")
    k = np.asarray(k, dtype=np.float64)
    if k.shape != (3, 3) or k[0, 0] <= 0 or k[1, 1] <= 0:
        raise ValueError(f"k: expected a 3×3 matrix with fx, fy > 0, got {k.tolist()}")
    z = depth[::stride, ::stride]
    keep = (np.asarray(mask)[::stride, ::stride] > threshold) & (z > 0) & np.isfinite(z)
    rows, cols = np.nonzero(keep)
    zs = z[rows, cols].astype(np.float64)
    u = cols * stride
    v = rows * stride
    fx, fy, cx, cy, skew = k[0, 0], k[1, 1], k[0, 2], k[1, 2], k[0, 1]
    y = (v - cy) / fy
    x = (u - cx - skew * y) / fx
    # a degenerate K overflows float32 here; point_cloud_fields drops those points
    with np.errstate(over="ignore"):
        points = np.stack([x * zs, y * zs, zs], axis=1).astype(np.float32)
    picked = None if colors is None else np.asarray(colors)[::stride, ::stride][rows, cols]
    return points, picked
