"""Pinhole cameras, their framings and their per-frame trajectories.

Intrinsics from a field of view, look-at extrinsics, Sapiens-style framings and per-frame
trajectories (orbit, subject tracking, hand-held shake, framing offsets that cut people at the
image border). World frame: metres, Z up. Camera frame: OpenCV optical (x right, y down, z
forward).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

from hcdp_training.synth.tracks import euler_to_matrix
import numpy as np

VIEWS = ("face", "upper_body", "full_body")
# People small and anywhere in the frame, as a robot or a street camera sees passers-by (the
# person 12-50 % of the image height, seen from 0-40 deg above); opt-in (`hcdp synth --far-share`)
FAR = "far"
FAR_EXTENT = (2.0, 8.0)        # vertical extent at the subject, in body heights
FAR_ELEVATION = (0.0, 40.0)    # degrees above the subject
FAR_OFFSET = 0.35              # framing offset in units of the extent, either axis


def intrinsics(width: int, height: int, vfov_deg: float) -> np.ndarray:
    """K for square pixels, principal point at the image centre (pixel centres at integers)."""
    f = 0.5 * height / np.tan(np.radians(vfov_deg) / 2)
    return np.array([[f, 0, (width - 1) / 2], [0, f, (height - 1) / 2], [0, 0, 1]], np.float64)


def look_at(eye: np.ndarray, target: np.ndarray) -> np.ndarray:
    """World-to-camera 4x4 for a camera at `eye` looking at `target`, world Z up, no roll."""
    forward = target - eye
    forward = forward / np.linalg.norm(forward)
    right = np.cross(forward, [0.0, 0.0, 1.0])
    if np.linalg.norm(right) < 1e-6:
        right = np.array([1.0, 0.0, 0.0])
    right = right / np.linalg.norm(right)
    down = np.cross(forward, right)
    rot = np.stack([right, down, forward])
    out = np.eye(4)
    out[:3, :3] = rot
    out[:3, 3] = -rot @ eye
    return out


@dataclass
class CameraSpec:
    """Logged camera controls of one sequence."""

    view: str
    vfov_deg: float
    azimuth_deg: float       # 0 = in front of the primary person
    elevation_deg: float
    extent_m: float          # vertical extent of the framing at the subject
    orbit_deg_s: float
    tracking: bool
    shake_deg: float
    offset: tuple[float, float]  # framing offset in units of the extent (border cuts)

    def to_json(self) -> dict:
        return asdict(self)


def sample_camera(rng: np.random.Generator, view: str, body_height: float,
                  video: bool) -> CameraSpec:
    if view == FAR:
        return _sample_far_camera(rng, body_height, video)
    if view not in VIEWS:
        raise ValueError(f"expected a view among {VIEWS + (FAR,)}, got {view!r}")
    extent = {"face": rng.uniform(0.3, 0.5), "upper_body": rng.uniform(0.75, 1.1),
              "full_body": body_height * rng.uniform(1.15, 1.6)}[view]
    cut = rng.random() < 0.25
    offset = tuple(float(x)
                   for x in (rng.uniform(-0.45, 0.45, 2) if cut else rng.uniform(-0.08, 0.08, 2)))
    azimuth = rng.uniform(-100, 100) if rng.random() < 0.85 else rng.uniform(100, 260)
    return CameraSpec(view=view, vfov_deg=float(rng.uniform(25, 70)), azimuth_deg=float(azimuth),
                      elevation_deg=float(rng.uniform(-15, 30)), extent_m=float(extent),
                      orbit_deg_s=float(rng.choice([0.0, rng.uniform(-40, 40)])) if video else 0.0,
                      tracking=bool(rng.random() < 0.7) if video else True,
                      shake_deg=float(rng.choice([0.0, rng.uniform(0.1, 1.0)])) if video else 0.0,
                      offset=offset)


def _sample_far_camera(rng: np.random.Generator, body_height: float, video: bool) -> CameraSpec:
    """Sample a far view: the subject small, anywhere in the frame, the camera above it."""
    return CameraSpec(view=FAR, vfov_deg=float(rng.uniform(25, 70)),
                      azimuth_deg=float(rng.uniform(-180, 180)),
                      elevation_deg=float(rng.uniform(*FAR_ELEVATION)),
                      extent_m=float(body_height * rng.uniform(*FAR_EXTENT)),
                      orbit_deg_s=float(rng.choice([0.0, rng.uniform(-20, 20)])) if video else 0.0,
                      tracking=bool(rng.random() < 0.3) if video else True,
                      shake_deg=float(rng.choice([0.0, rng.uniform(0.1, 0.5)])) if video else 0.0,
                      offset=tuple(float(x) for x in rng.uniform(-FAR_OFFSET, FAR_OFFSET, 2)))


def trajectory(spec: CameraSpec, anchor: np.ndarray, facing_yaw: float, fps: float,
               rng: np.random.Generator) -> np.ndarray:
    """World-to-camera [T,4,4] following (or not) `anchor` [T,3].

    `anchor` is the framed point of the subject.
    """
    frames = len(anchor)
    t = np.arange(frames) / fps
    distance = 0.5 * spec.extent_m / np.tan(np.radians(spec.vfov_deg) / 2)
    if spec.tracking:
        kernel = np.exp(-0.5 * (np.arange(-6, 7) / 3.0) ** 2)
        padded = np.pad(anchor, ((6, 6), (0, 0)), mode="edge")
        target = np.stack([np.convolve(padded[:, i], kernel / kernel.sum(), "valid")
                           for i in range(3)], 1)
    else:
        target = np.repeat(anchor[:1], frames, 0)
    az = np.radians(spec.azimuth_deg + spec.orbit_deg_s * t) + facing_yaw - np.pi / 2
    el = np.radians(spec.elevation_deg)
    direction = np.stack([np.cos(el) * np.cos(az), np.cos(el) * np.sin(az),
                          np.full(frames, np.sin(el))], 1)
    shake = np.cumsum(rng.normal(0, 1, (frames, 3)), 0)
    shake = (shake - shake.mean(0)) / max(np.abs(shake).max(), 1e-6) * np.radians(spec.shake_deg)
    out = np.empty((frames, 4, 4))
    for i in range(frames):
        pose = look_at(target[i] + distance * direction[i], target[i])
        # Framing offset: shift the look-at point in the image plane so the subject moves
        # off-centre.
        right, down = pose[0, :3], pose[1, :3]
        shifted = target[i] + spec.extent_m * (spec.offset[0] * right + spec.offset[1] * down)
        pose = look_at(shifted + distance * direction[i], shifted)
        # small (pitch, yaw, roll) about camera axes
        pose[:3] = euler_to_matrix(shake[i]) @ pose[:3]
        out[i] = pose
    return out
