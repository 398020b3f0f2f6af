"""Rotation tracks of a motion.

They are shared by the procedural library (`motion.py`) and the walk cycle (`walkcycle.py`).

A motion is a set of per-bone rotation tracks in anny's "local-ref" parameterisation (rotations
about the bone head in axes aligned with the rest pose's world axes: X to the character's left, Y
backwards, Z up) plus a root trajectory (forward speed, yaw rate, hop height). Tracks are written
for the left side; right-side bones get the mirrored rotation (Y and Z angles negated). Every angle
is clamped to `JOINT_LIMITS` before use.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

# Per-joint limits (radians) for X, Y, Z in the left-side convention; Y > 0 lowers an arm.
JOINT_LIMITS: dict[str, tuple[tuple[float, float], tuple[float, float], tuple[float, float]]] = {
    "spine05": ((-0.3, 0.5), (-0.3, 0.3), (-0.5, 0.5)),
    "spine03": ((-0.3, 0.5), (-0.3, 0.3), (-0.5, 0.5)),
    "spine01": ((-0.3, 0.5), (-0.3, 0.3), (-0.5, 0.5)),
    "neck01": ((-0.5, 0.6), (-0.4, 0.4), (-0.8, 0.8)),
    "head": ((-0.5, 0.6), (-0.4, 0.4), (-0.8, 0.8)),
    "upperleg01": ((-2.0, 0.6), (-0.5, 0.3), (-0.6, 0.6)),
    "lowerleg01": ((0.0, 2.4), (0.0, 0.0), (0.0, 0.0)),
    "foot": ((-0.7, 0.7), (-0.2, 0.2), (-0.3, 0.3)),
    "clavicle": ((-0.3, 0.3), (-0.3, 0.5), (-0.3, 0.3)),
    "upperarm01": ((-2.8, 1.0), (-2.3, 1.0), (-1.3, 1.3)),
    "lowerarm01": ((-2.5, 0.0), (-0.2, 0.2), (-1.2, 1.2)),
    "wrist": ((-1.0, 1.0), (-0.5, 0.5), (-0.4, 0.4)),
}
# A tuple, not a set: tracks are created in this order, and motions draw their random numbers in
# track order, so a set's per-process string-hash order would change every dance.
SIDED = ("upperleg01", "lowerleg01", "foot", "clavicle", "upperarm01", "lowerarm01", "wrist")


@dataclass
class Motion:
    """Sampled motion.

    tracks[joint][side] -> [T,3] angles, root speed [T] (m/s), yaw [T] (rad), hop [T] (m).
    """

    name: str
    tracks: dict[str, np.ndarray] = field(default_factory=dict)
    speed: np.ndarray | None = None
    yaw: np.ndarray | None = None
    hop: np.ndarray | None = None
    params: dict[str, float] = field(default_factory=dict)


def empty_tracks(frames: int) -> dict[str, np.ndarray]:
    """Zero [frames,3] tracks for every driven joint (sided joints as `joint.L` / `joint.R`)."""
    keys = [k for k in JOINT_LIMITS if k not in SIDED] + [f"{k}.{s}" for k in SIDED for s in "LR"]
    return {k: np.zeros((frames, 3), np.float64) for k in keys}


def clamp_to_limits(motion: Motion) -> dict[str, np.ndarray]:
    """Joint-limited tracks: every angle clamped to `JOINT_LIMITS` (left-side convention)."""
    out = {}
    for key, values in motion.tracks.items():
        lo, hi = np.array(JOINT_LIMITS[key.split(".")[0]]).T
        out[key] = np.clip(values, lo, hi)
    return out


def euler_to_matrix(angles: np.ndarray | torch.Tensor) -> np.ndarray | torch.Tensor:
    """[...,3] XYZ angles (applied X, then Y, then Z) -> [...,3,3] rotation matrices.

    Numpy or torch.
    """
    xp = torch if isinstance(angles, torch.Tensor) else np
    cx, cy, cz = xp.cos(angles[..., 0]), xp.cos(angles[..., 1]), xp.cos(angles[..., 2])
    sx, sy, sz = xp.sin(angles[..., 0]), xp.sin(angles[..., 1]), xp.sin(angles[..., 2])
    one, zero = xp.ones_like(cx), xp.zeros_like(cx)
    rx = xp.stack([one, zero, zero, zero, cx, -sx, zero, sx, cx], -1).reshape(*cx.shape, 3, 3)
    ry = xp.stack([cy, zero, sy, zero, one, zero, -sy, zero, cy], -1).reshape(*cx.shape, 3, 3)
    rz = xp.stack([cz, -sz, zero, sz, cz, zero, zero, zero, one], -1).reshape(*cx.shape, 3, 3)
    return rz @ ry @ rx


def pose_deltas(motion: Motion, bone_labels: list[str]) -> torch.Tensor:
    """Per-bone local-ref deltas [T,J,4,4] float32 (identity for undriven bones).

    They are mirrored on the right.
    """
    tracks = clamp_to_limits(motion)
    frames = len(next(iter(tracks.values())))
    deltas = np.tile(np.eye(4, dtype=np.float64), (frames, len(bone_labels), 1, 1))
    mirror = np.array([1.0, -1.0, -1.0])
    for key, angles in tracks.items():
        if key not in bone_labels:
            raise KeyError(f"motion track {key!r} is not an anny bone")
        deltas[:, bone_labels.index(key), :3,
               :3] = euler_to_matrix(angles * (mirror if key.endswith(".R") else 1.0))
    return torch.from_numpy(deltas.astype(np.float32))
