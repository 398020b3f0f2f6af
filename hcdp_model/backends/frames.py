"""Frames to verify an export against eager PyTorch: random tensors, and camera-like frames.

The camera-like frames are the caller's (`export_artefact(frames=...)`, `hcdp export
--check-images`: a folder of images or a video file), else a generated picture (smooth
background, a textured figure, an edge), so verification always sees natural image statistics,
not only noise. This module reads no ROS message: decoding those is the ROS package's job.
"""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import torch

from ..preprocess import preprocess

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp")


def random_frames(resolution: int, count: int, seed: int = 0) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(1, 3, resolution, resolution, generator=g) for _ in range(count)]


def read_images(path: str | Path, count: int) -> list[np.ndarray]:
    """Read the first `count` RGB uint8 images of a folder of images or of a video file.

    A folder's images are taken sorted by name; a video file is read with OpenCV. ValueError naming
    the path when there is none.
    """
    path = Path(path)
    images: list[np.ndarray] = []
    if path.is_dir():
        for file in sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES):
            bgr = cv2.imread(str(file), cv2.IMREAD_COLOR)
            if bgr is not None:
                images.append(np.ascontiguousarray(bgr[..., ::-1]))
            if len(images) == count:
                break
    else:
        capture = cv2.VideoCapture(str(path))
        while len(images) < count:
            ok, bgr = capture.read()
            if not ok:
                break
            images.append(np.ascontiguousarray(bgr[..., ::-1]))
        capture.release()
    if not images:
        raise ValueError(f"expected images ({'/'.join(IMAGE_SUFFIXES)}) in the folder or a video "
                         f"file OpenCV reads, found none at {path}")
    return images


def generated_images(count: int, height: int = 480, width: int = 640) -> list[np.ndarray]:
    """Generate a figure moving across a smooth background.

    Enough structure for a meaningful comparison.
    """
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


def check_frames(images: list[np.ndarray], resolution: int,
                 camera_size: tuple[int, int]) -> list[torch.Tensor]:
    """RGB uint8 images resized to `camera_size` (H, W), then preprocessed as the node does."""
    h, w = camera_size
    return [preprocess(cv2.resize(im, (w, h), interpolation=cv2.INTER_AREA), resolution)[0]
            for im in images]


def real_frames(resolution: int, count: int, camera_size: tuple[int, int],
                source: str | Path | None = None) -> tuple[list[torch.Tensor], str]:
    """Preprocessed camera-like frames at `camera_size` (H, W) and where they came from.

    The images of `source` (`read_images`), else generated ones.
    """
    if source is None:
        return (check_frames(generated_images(count), resolution, camera_size),
                "generated frames")
    return check_frames(read_images(source, count), resolution, camera_size), f"images of {source}"
