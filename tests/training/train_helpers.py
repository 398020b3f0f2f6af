"""Tiny generated data and configs for the trainer tests.

A textured disc "person" moving right by a known number of pixels per frame over a static textured
background, with exact depth, normals, mask, canonical coordinates and flows, written in the hcdp
on-disk format at the micro model's resolution.
"""
from __future__ import annotations

from pathlib import Path

from hcdp_training.config import TrainConfig
from hcdp_training.data.format import write_frame, write_meta
import numpy as np
from tests.model.helpers import micro_config

SIZE = 56  # micro_config().resolution
RADIUS = 16.0


def disc_frame(t: int, rng_bg: np.ndarray, speed: float, y0: float,
               x0: float) -> dict[str, np.ndarray]:
    ys, xs = np.mgrid[0:SIZE, 0:SIZE].astype(np.float32)
    cx = x0 + speed * t
    rx, ry = (xs - cx) / RADIUS, (ys - y0) / RADIUS
    r2 = rx * rx + ry * ry
    inside = r2 < 1.0
    z = np.sqrt(np.clip(1.0 - r2, 0.0, 1.0))
    depth = np.where(inside, 2.0 - 0.3 * z, np.nan).astype(np.float32)
    normal = np.where(inside[..., None], np.stack([rx, ry, -z - 1e-3], -1), 0.0)
    normal /= np.maximum(np.linalg.norm(normal, axis=-1, keepdims=True), 1e-6)
    stripes = (np.sin(rx * 6.0) * 0.5 + 0.5)[..., None] * np.array([200, 60, 40]) + 40
    rgb = np.where(inside[..., None], stripes, rng_bg).astype(np.uint8)
    canonical = np.where(inside[..., None], np.stack([rx, ry, z], -1), 0.0).astype(np.float32)
    return {"rgb": rgb, "depth": depth, "normal": normal.astype(np.float32),
            "mask": inside.astype(np.float32),
            "canonical": canonical, "inside": inside}


def write_disc_sequences(root: Path, sequences: int = 2, frames: int = 4, strides: int = 2,
                         seed: int = 0) -> Path:
    """Write `sequences` folders of `frames` frames; the disc moves 1.5 px/frame.

    Flows are exact inside the disc, 0 on the static background.
    """
    rng = np.random.default_rng(seed)
    for s in range(sequences):
        background = rng.integers(0, 120, (SIZE, SIZE, 3)).astype(np.float32)
        speed, y0, x0 = 1.5, 24.0 + 4 * s, 18.0 + 3 * s
        for t in range(frames):
            f = disc_frame(t, background, speed, y0, x0)
            fwd, bwd = [], []
            for k in range(1, strides + 1):
                move = np.where(f["inside"][..., None], np.array([speed * k, 0.0]),
                                0.0).astype(np.float32)
                fwd.append(move if t + k < frames else np.zeros_like(move))
                bwd.append(-move if t - k >= 0 else np.zeros_like(move))
            write_frame(root / f"seq_{s}", t, f["rgb"], f["mask"], f["depth"], f["normal"],
                        f["canonical"], fwd, bwd)
        K = [[[40.0, 0, (SIZE - 1) / 2], [0, 40.0, (SIZE - 1) / 2], [0, 0, 1]]] * frames
        write_meta(root / f"seq_{s}",
                   {"frames": frames, "flow_strides": strides, "width": SIZE, "height": SIZE,
                    "K": K, "extrinsics": [np.eye(4).tolist()] * frames})
    return root


def write_micro_config(path: Path) -> Path:
    micro_config().save(path)
    return path


def train_config(stage: int, out: Path, data_root: Path, model_config: Path,
                 **sections) -> TrainConfig:
    """Return a micro run: no warm-up, high learning rates, no logging, checkpoints every step."""
    base = {
        "stage": stage, "out": str(out),
        "model": {"config": str(model_config)},
        "data": {"root": str(data_root), "augment": False,
                 **({"frames": 3, "stride": [1, 2]} if stage == 2 else {})},
        "optim": {"steps": 3, "batch_size": 2, "warmup_steps": 0, "lr_encoder": 1e-3,
                  "lr_others": 1e-3,
                  "lr_temporal": 1e-2},
        "log": {"tensorboard": False, "progress": False},
        "checkpoint": {"every": 1, "keep": 1},
    }
    for name, values in sections.items():
        base[name] = {**base.get(name, {}), **values} if isinstance(values, dict) else values
    return TrainConfig.from_dict(base)
