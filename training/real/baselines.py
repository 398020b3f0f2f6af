"""Image-independent predictions printed beside every real-footage number.

They are what a metric gives for an output that never looked at the image.

- `all_foreground`: everything is a person, depth constant, every normal facing the camera.
- `centred_ellipse`: a person-shaped ellipse in the middle of the frame (semi-axes a quarter of
  the width and 0.4 of the height), depth and normals of a bump (a half ellipsoid, nearest at its
  centre) on a flat, camera-facing background.
Normals are in the camera optical frame (x right, y down, z forward): facing the camera is
(0, 0, -1).
"""
from __future__ import annotations

import numpy as np

ELLIPSE_AXES = (0.25, 0.4)  # semi-axes as shares of the frame's width and height
BUMP_HEIGHT = 0.5           # how much nearer the ellipse's centre is than the background (depth 1)

Maps = tuple[np.ndarray, np.ndarray, np.ndarray]  # depth [H,W], normals [H,W,3], mask [H,W]


def _facing(h: int, w: int) -> np.ndarray:
    normals = np.zeros((h, w, 3), np.float32)
    normals[..., 2] = -1.0
    return normals


def all_foreground(h: int, w: int) -> Maps:
    return np.ones((h, w), np.float32), _facing(h, w), np.ones((h, w), np.float32)


def centred_ellipse(h: int, w: int) -> Maps:
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
    u = (xs - (w - 1) / 2) / (ELLIPSE_AXES[0] * w)
    v = (ys - (h - 1) / 2) / (ELLIPSE_AXES[1] * h)
    r2 = u * u + v * v
    inside = r2 < 1.0
    cap = np.sqrt(np.clip(1.0 - r2, 0.0, 1.0))
    depth = np.where(inside, 1.0 - BUMP_HEIGHT * cap, 1.0).astype(np.float32)
    normals = _facing(h, w)
    normals[inside] = np.stack([u[inside], v[inside], -cap[inside]], axis=1)
    normals /= np.maximum(np.linalg.norm(normals, axis=2, keepdims=True), 1e-6)
    return depth, normals, inside.astype(np.float32)


BASELINES = {"all_foreground": all_foreground, "centred_ellipse": centred_ellipse}
