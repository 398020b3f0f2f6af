"""`hcdp bag` pictures: the contact sheet (frames + an x-t slice) and the side-by-side video."""
from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
import math
from pathlib import Path

import cv2
from hcdp_model.visualize import colorize_depth, contact_sheet, mask_to_rgb, normals_to_rgb
import numpy as np

SHEET_FRAMES = 4
# the x-t slice keeps one row of every k-th frame, k chosen to stay under this
SLICE_MAX_ROWS = 512


def _label(tile: np.ndarray, text: str) -> np.ndarray:
    """Return a copy of ``tile`` with ``text`` in its top-left corner (white on a dark outline)."""
    out = tile.copy()
    scale = max(0.35, tile.shape[0] / 600)
    origin = (4, int(4 + 22 * scale))
    cv2.putText(out, text, origin, cv2.FONT_HERSHEY_SIMPLEX, scale, (0, 0, 0), 3, cv2.LINE_AA)
    cv2.putText(out, text, origin, cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 255), 1,
                cv2.LINE_AA)
    return out


def _resized(image: np.ndarray, size: tuple[int, int],
             interpolation: int = cv2.INTER_AREA) -> np.ndarray:
    """``image`` at ``size`` (H, W), unchanged when it already has it."""
    if image.shape[:2] == size:
        return image
    return cv2.resize(image, (size[1], size[0]), interpolation=interpolation)


@dataclass(frozen=True)
class FrameView:
    """One processed frame as the pictures use it (input size; viz tiles uint8 RGB)."""

    index: int
    stamp: float
    rgb: np.ndarray
    depth: np.ndarray
    normals: np.ndarray
    mask: np.ndarray
    tiles: tuple[np.ndarray, ...]  # input, depth viz, normals viz, mask overlay


SHEET_LABELS = ["input", "relative depth", "normals", "mask"]


class ContactSheet:
    """A few frames spread over the bag (input | depth | normals | mask) and an x-t slice row.

    The x-t slice stacks the middle image row of every frame (of every k-th frame in long bags)
    from top to bottom, so time runs down; its depth is coloured with one range for the whole
    slice, so depth that flickers from frame to frame shows as horizontal streaks. Depth and
    normals are drawn inside the predicted mask (> 0.5) only, black elsewhere, as depth and
    normals are published by default.
    """

    def __init__(self, total_frames: int):
        count = max(1, min(SHEET_FRAMES, total_frames))
        self.wanted = sorted({int(round(i))
                              for i in np.linspace(0, max(total_frames - 1, 0), count)})
        self.stride = max(1, math.ceil(total_frames / SLICE_MAX_ROWS))
        self.rows: list[list[np.ndarray]] = []
        self.slice: dict[str, list[np.ndarray]] = defaultdict(list)
        self.size: tuple[int, int] | None = None
        self.slice_row: int | None = None
        self.start = 0.0

    def add(self, frame: FrameView) -> None:
        if self.size is None:
            self.size = frame.rgb.shape[:2]
            self.slice_row = self.size[0] // 2
            self.start = frame.stamp
        if self.wanted and frame.index >= self.wanted[0]:
            while self.wanted and frame.index >= self.wanted[0]:
                self.wanted.pop(0)
            tiles = [_resized(t, self.size) for t in frame.tiles]
            tiles[0] = _label(tiles[0], f"frame {frame.index}, {frame.stamp - self.start:+.2f} s")
            self.rows.append(tiles)
        if frame.index % self.stride == 0:
            y = frame.rgb.shape[0] // 2
            width = self.size[1]
            for name, array in (("rgb", frame.rgb), ("depth", frame.depth),
                                ("normals", frame.normals), ("mask", frame.mask)):
                row = np.ascontiguousarray(array[y:y + 1])
                resized = _resized(row, (1, width), cv2.INTER_LINEAR)
                self.slice[name].append(resized.reshape((width,) + array.shape[2:]))

    def image(self) -> np.ndarray:
        if not self.rows or self.size is None:
            raise ValueError("no frame was processed, so there is no contact sheet to draw")
        rgb, depth, normals, mask = (np.stack(self.slice[k])
                                     for k in ("rgb", "depth", "normals", "mask"))
        normals = np.where((mask > 0.5)[..., None], normals, np.nan)
        slice_tiles = [rgb, colorize_depth(depth, mask), normals_to_rgb(normals),
                       mask_to_rgb(mask, rgb)]
        slice_tiles = [_resized(t, self.size, cv2.INTER_NEAREST) for t in slice_tiles]
        slice_tiles[0] = _label(slice_tiles[0], f"x-t slice of row {self.slice_row}, time down")
        return contact_sheet(self.rows + [slice_tiles], SHEET_LABELS)


class SideBySideVideo:
    """An MP4 (OpenCV 'mp4v') of input | depth | normals | mask overlay.

    One video frame per input frame.
    """

    def __init__(self, path: Path, fps: float):
        self.path = path
        self.fps = fps
        self.writer: cv2.VideoWriter | None = None
        self.size: tuple[int, int] | None = None
        self.frames = 0

    def add(self, frame: FrameView) -> None:
        if self.writer is None:
            self.size = frame.rgb.shape[:2]
            h, w = self.size
            self.writer = cv2.VideoWriter(str(self.path), cv2.VideoWriter_fourcc(*"mp4v"),
                                          self.fps,
                                          (w * len(frame.tiles), h))
            if not self.writer.isOpened():
                raise OSError(f"cannot write {self.path}: OpenCV has no 'mp4v' encoder for it")
        strip = np.hstack([_resized(t, self.size) for t in frame.tiles])
        self.writer.write(cv2.cvtColor(strip, cv2.COLOR_RGB2BGR))
        self.frames += 1

    def close(self) -> None:
        if self.writer is not None:
            self.writer.release()
