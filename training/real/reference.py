"""Label-free people masks for a static-camera video: background subtraction.

The background is the per-pixel median of frames spread over the whole video (a person who keeps
moving covers a pixel in fewer than half of them); a pixel is a person where its colour differs
from the background by more than `threshold` in some channel; an opening removes sensor speckle,
a closing joins the parts of one body, and components below `min_area` are dropped. Shadows and
moving objects other than people count as people: the reference is only as good as the scene is
simple.
"""
from __future__ import annotations

import cv2
import numpy as np

BACKGROUND_FRAMES = 60  # frames spread over the video for the median
THRESHOLD = 30          # colour difference (0-255, max over channels) that marks the foreground
MIN_AREA_SHARE = 5e-4   # smallest person, as a share of the frame's pixels


def median_background(frames: np.ndarray) -> np.ndarray:
    """Per-pixel, per-channel median of uint8 frames [N,H,W,3] -> [H,W,3] uint8."""
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3 or len(frames) == 0:
        raise ValueError(f"expected frames [N,H,W,3] with N >= 1, got shape {frames.shape}")
    return np.median(frames, axis=0).round().astype(np.uint8)


def min_area(shape: tuple[int, ...]) -> int:
    """Return the smallest person (pixels) for a frame of `shape` (H, W, ...).

    It is MIN_AREA_SHARE of the frame.
    """
    return max(1, round(MIN_AREA_SHARE * shape[0] * shape[1]))


def foreground_mask(frame: np.ndarray, background: np.ndarray, threshold: int = THRESHOLD,
                    smallest: int | None = None) -> np.ndarray:
    """People of one uint8 frame [H,W,3] against `background` [H,W,3]: float32 [H,W] in {0, 1}."""
    if frame.shape != background.shape or frame.ndim != 3:
        raise ValueError(f"expected a frame and a background of one shape [H,W,3], got "
                         f"{frame.shape} and {background.shape}")
    diff = cv2.absdiff(frame, background).max(axis=2)
    fg = (diff > threshold).astype(np.uint8)
    fg = cv2.morphologyEx(fg, cv2.MORPH_OPEN, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (3, 3)))
    close = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (7, 7))
    fg = cv2.morphologyEx(fg, cv2.MORPH_CLOSE, close)
    count, labels, stats, _ = cv2.connectedComponentsWithStats(fg, connectivity=8)
    smallest = min_area(frame.shape) if smallest is None else smallest
    keep = np.zeros(count, bool)
    keep[1:] = stats[1:, cv2.CC_STAT_AREA] >= smallest
    return keep[labels].astype(np.float32)


def background_frame_indices(total: int, count: int = BACKGROUND_FRAMES) -> list[int]:
    """Return `count` frame indices spread evenly over a video of `total` frames.

    All of them when the video is shorter.
    """
    if total < 1:
        raise ValueError(f"expected a video with at least one frame, got {total}")
    return sorted({round(i) for i in np.linspace(0, total - 1, min(count, total))})
