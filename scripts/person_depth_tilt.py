"""Measure how much of a model's person-depth error is a tilt down the person (per frame, W=1).

On held-out renders: the prediction is aligned to the GT depth on the person (least-squares scale
and shift, as the held-out RMSE is), and the residual (metres) is regressed on the image row,
normalised to the person's height in pixels. Prints the slope (the residual's change from the top
of the person to the bottom; negative = the lower body predicted too near) and the share of the
residual's mean square that the tilt explains. docs/training.md, session 13, uses it to show that
renders on a ground teach "lower in the image = nearer" inside people too.

    python scripts/person_depth_tilt.py --data gen/heldout data/models/default runs/X/final
"""
from __future__ import annotations

from heldout_frames import parse_arguments, predictions
import numpy as np


def frame_tilt(pred: np.ndarray, depth: np.ndarray,
               mask: np.ndarray) -> tuple[float, float] | None:
    """Return (slope in metres over the person's height, share explained) or None (< 200 px)."""
    gate = (mask > 0.5) & np.isfinite(depth)
    rows, _ = np.nonzero(gate)
    if len(rows) < 200:
        return None
    d, g = pred[gate].astype(np.float64), depth[gate].astype(np.float64)
    s, t = np.linalg.lstsq(np.stack([d, np.ones_like(d)], 1), g, rcond=None)[0]
    residual = s * d + t - g
    height = (rows - rows.min()) / max(rows.max() - rows.min(), 1)
    design = np.stack([height, np.ones_like(height)], 1)
    coef = np.linalg.lstsq(design, residual, rcond=None)[0]
    left = residual - design @ coef
    return float(coef[0]), float(1.0 - (left @ left) / max(residual @ residual, 1e-12))


def main() -> None:
    args = parse_arguments(__doc__.splitlines()[0])
    for checkpoint in args.checkpoints:
        scores = [s for f, pred in predictions(checkpoint, args.data, args.frames)
                  if (s := frame_tilt(pred.depth, f["depth"], f["mask"])) is not None]
        slope, share = np.array(scores).T
        print(f"{checkpoint}: {len(scores)} frames; residual tilt top -> bottom of the person "
              f"{100 * slope.mean():+.1f} cm (median {100 * np.median(slope):+.1f} cm); share of "
              f"the residual it explains {share.mean():.3f}")


if __name__ == "__main__":
    main()
