"""Frames to verify an export against eager PyTorch: random tensors, and real camera frames.

Real frames come from the committed sample bag (`data/sample`, read with rosbags) when it is there,
else from a generated picture (smooth background, a textured figure, an edge), so verification always
sees natural image statistics, not only noise.
"""
from __future__ import annotations

import logging
from pathlib import Path

import cv2
import numpy as np
import torch

from ..preprocess import preprocess

log = logging.getLogger(__name__)
SAMPLE_DIR = Path(__file__).resolve().parents[2] / "data" / "sample"
IMAGE_TYPES = ("sensor_msgs/msg/Image", "sensor_msgs/msg/CompressedImage")


def random_frames(resolution: int, count: int, seed: int = 0) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(1, 3, resolution, resolution, generator=g) for _ in range(count)]


def _decode(msg, msgtype: str) -> np.ndarray | None:
    """sensor_msgs Image (rgb8/bgr8/mono8) or CompressedImage -> RGB uint8; None for other encodings."""
    if msgtype.endswith("CompressedImage"):
        bgr = cv2.imdecode(np.frombuffer(msg.data, np.uint8), cv2.IMREAD_COLOR)
        return None if bgr is None else bgr[..., ::-1]
    channels = {"rgb8": 3, "bgr8": 3, "mono8": 1}.get(msg.encoding)
    if channels is None:
        return None
    rows = np.frombuffer(msg.data, np.uint8).reshape(msg.height, msg.step)[:, :msg.width * channels]
    image = rows.reshape(msg.height, msg.width, channels)
    if msg.encoding == "bgr8":
        return image[..., ::-1]
    return np.repeat(image, 3, axis=2) if channels == 1 else image


def bag_images(folder: Path, count: int) -> list[np.ndarray]:
    """The first `count` images of the first image topic of the first rosbag2 (a directory with a
    metadata.yaml) under `folder`; [] when there is none or it cannot be read."""
    bags = sorted(p.parent for p in folder.rglob("metadata.yaml"))
    if not bags:
        return []
    from rosbags.rosbag2 import Reader  # only when a bag is there
    from rosbags.typesys import Stores, get_typestore

    typestore = get_typestore(Stores.ROS2_HUMBLE)
    images: list[np.ndarray] = []
    try:
        with Reader(bags[0]) as reader:
            topics = [c for c in reader.connections if c.msgtype in IMAGE_TYPES]
            for connection, _, raw in reader.messages(connections=topics[:1]):
                image = _decode(typestore.deserialize_cdr(raw, connection.msgtype), connection.msgtype)
                if image is not None:
                    images.append(np.ascontiguousarray(image))
                if len(images) == count:
                    break
    except Exception as err:  # rosbags raises many reader/deserialisation errors; all mean "no frames"
        log.warning("%s: cannot read sample frames (%s); using generated frames", bags[0], err)
        return []
    return images


def generated_images(count: int, height: int = 480, width: int = 640) -> list[np.ndarray]:
    """A figure moving across a smooth background: enough structure for a meaningful comparison."""
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    background = np.stack([xx / width, yy / height, 0.5 + 0.3 * np.sin(xx / 40.0)], axis=-1)
    texture = 0.5 + 0.5 * np.sin(xx / 7.0) * np.cos(yy / 5.0)
    images = []
    for t in range(count):
        cx, cy = width * (0.4 + 0.05 * t), height * 0.55
        body = ((xx - cx) / (0.12 * width)) ** 2 + ((yy - cy) / (0.35 * height)) ** 2 < 1.0
        head = (xx - cx) ** 2 + (yy - cy + 0.42 * height) ** 2 < (0.06 * height) ** 2
        person = (body | head)[..., None]
        skin = np.stack([0.8 * texture, 0.55 * texture, np.full_like(texture, 0.45)], axis=-1)
        images.append((np.where(person, skin, background) * 255).clip(0, 255).astype(np.uint8))
    return images


def real_frames(resolution: int, count: int, camera_size: tuple[int, int]) -> tuple[list[torch.Tensor], str]:
    """Preprocessed camera frames at `camera_size` (H, W) and where they came from."""
    images = bag_images(SAMPLE_DIR, count) if SAMPLE_DIR.is_dir() else []
    source = f"sample bag under {SAMPLE_DIR}"
    if not images:
        images, source = generated_images(count), "generated frames (no sample bag under data/sample)"
    h, w = camera_size
    frames = [preprocess(cv2.resize(im, (w, h), interpolation=cv2.INTER_AREA), resolution)[0] for im in images]
    return frames, source
