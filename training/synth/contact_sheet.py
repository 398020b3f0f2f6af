"""Contact sheet of generated frames: RGB, depth, normals, mask, forward flow, canonical coords.

Usage:

    python -m hcdp_training.synth.contact_sheet --root DIR [DIR ...] --out sheet.png
    [--per-sequence 1]
"""
from __future__ import annotations

import argparse
from pathlib import Path

import cv2
from hcdp_model.visualize import colorize_depth, contact_sheet, mask_to_rgb, normals_to_rgb
from hcdp_training.data import list_sequences, read_frame
from hcdp_training.data.format import read_meta
import numpy as np

LABELS = ["rgb", "depth", "normals", "mask", "flow fwd", "canonical"]


def flow_to_rgb(flow: np.ndarray, max_magnitude: float | None = None) -> np.ndarray:
    """Optical flow [H,W,2] as colour: hue = direction, saturation = magnitude (white = still)."""
    magnitude = np.linalg.norm(flow, axis=-1)
    scale = max_magnitude or max(float(np.percentile(magnitude, 99)), 1e-6)
    hsv = np.zeros(flow.shape[:2] + (3,), np.uint8)
    angle = np.arctan2(flow[..., 1], flow[..., 0])
    hsv[..., 0] = ((angle + np.pi) / (2 * np.pi) * 179).astype(np.uint8)
    hsv[..., 1] = (np.clip(magnitude / scale, 0, 1) * 255).astype(np.uint8)
    hsv[..., 2] = 255
    return cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)


def frame_row(frame: dict) -> list[np.ndarray]:
    canonical = ((np.clip(frame["canonical"], -1, 1) * 0.5 + 0.5) * 255).astype(np.uint8)
    return [frame["rgb"], colorize_depth(frame["depth"], frame["mask"]),
            normals_to_rgb(frame["normal"]),
            mask_to_rgb(frame["mask"]), flow_to_rgb(frame["flow_fwd"]), canonical]


def build_sheet(roots: list[Path], per_sequence: int = 1) -> np.ndarray:
    rows = []
    for root in roots:
        for seq in list_sequences(root):
            frames = int(read_meta(seq)["frames"])
            for t in np.linspace(0, max(frames - 2, 0), per_sequence).round().astype(int):
                rows.append(frame_row(read_frame(seq, int(t))))
    return contact_sheet(rows, LABELS)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", nargs="+", required=True, type=Path)
    parser.add_argument("--out", required=True, type=Path)
    parser.add_argument("--per-sequence", type=int, default=1)
    args = parser.parse_args()
    sheet = build_sheet(args.root, args.per_sequence)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(args.out), cv2.cvtColor(sheet, cv2.COLOR_RGB2BGR),
                [cv2.IMWRITE_PNG_COMPRESSION, 9])
    print(f"wrote {args.out} ({sheet.shape[1]}x{sheet.shape[0]})")


if __name__ == "__main__":
    main()
