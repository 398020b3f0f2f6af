"""Where streaming's window removes depth flicker, by how fast each pixel moves (issue 17).

    python scripts/flicker_by_motion.py [--checkpoint DIR] [--data gen/heldout] [--window 16]
        [--perturb SEED]

OPW's per-pixel terms |D_k - W(D_{k+1}, O_{k->k+1})| (eq. 20: the evaluator's per-sequence depth
alignment and its cycle-checked valid set on the ground-truth mask, as `hcdp eval`) for the same
weights at the window and at window 1, binned by the ground-truth forward flow's magnitude in
pixels per frame. The temporal blocks attend along time at a fixed position, so a pixel that moves
far between frames meets another surface in the past: the table says how much of the remaining
flicker sits there. Offline causal forwards (equal to streaming, tests/model/test_streaming.py).
"""
from __future__ import annotations

import argparse
from pathlib import Path

from hcdp_model.backends.base import DEFAULT_WINDOW
from hcdp_model.checkpoint import load_checkpoint
from hcdp_model.geometry import backward_warp
from hcdp_model.predictor import default_checkpoint
from hcdp_training.data import list_sequences
from hcdp_training.evaluate import load_sequence, sequence_clip
from hcdp_training.metrics import _chw, _sequence_depth, temporal_valid_mask
import numpy as np
import torch

EDGES = (0.0, 0.5, 1.0, 2.0, 4.0, float("inf"))  # flow magnitude bins, pixels per frame


def flicker_by_speed(model, sequence, window: int) -> tuple[np.ndarray, np.ndarray]:
    """Sum of OPW's per-pixel terms and the pixel count in each EDGES bin, for one sequence."""
    g_depth, region = _chw(sequence.depth, 1), _chw(sequence.mask, 1) > 0.5
    fwd, bwd = _chw(sequence.flow_fwd, 2), _chw(sequence.flow_bwd, 2)
    valid = temporal_valid_mask(region[:-1], fwd[:-1], bwd[1:])
    speed = fwd[:-1].norm(dim=1, keepdim=True)
    with torch.no_grad():
        depth = model(sequence_clip(sequence, model.cfg.resolution), window=window)["depth"][0]
    depth = _sequence_depth(depth.double(), g_depth.double(), region)
    warped, _ = backward_warp(depth[1:], fwd[:-1].double())
    error = (depth[:-1] - warped).abs()
    sums, counts = np.zeros(len(EDGES) - 1), np.zeros(len(EDGES) - 1)
    for i, (low, high) in enumerate(zip(EDGES[:-1], EDGES[1:])):
        chosen = valid & (speed >= low) & (speed < high)
        sums[i], counts[i] = float(error[chosen].sum()), int(chosen.sum())
    return sums, counts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", type=Path, default=None,
                        help="default: the bundled model")
    parser.add_argument("--data", type=Path, default=Path("gen/heldout"))
    parser.add_argument("--window", type=int, default=DEFAULT_WINDOW)
    parser.add_argument("--perturb", type=int, default=None,
                        help="per-frame nuisances drawn from this seed (hcdp eval --perturb)")
    args = parser.parse_args()
    model = load_checkpoint(args.checkpoint or default_checkpoint()).eval()
    model.set_temporal_mode("causal")
    total = {w: np.zeros(len(EDGES) - 1) for w in (args.window, 1)}
    counts = np.zeros(len(EDGES) - 1)
    for directory in list_sequences(args.data):
        sequence = load_sequence(directory, perturb=args.perturb)
        for w in (args.window, 1):
            sums, n = flicker_by_speed(model, sequence, w)
            total[w] += sums
        counts += n
    print(f"| flow (px/frame) | share of pixels | W={args.window} | W=1 | W={args.window} / W=1 |")
    print("|---|---:|---:|---:|---:|")
    rows = [(f"{lo:g}–{hi:g}", total[args.window][i], total[1][i], counts[i])
            for i, (lo, hi) in enumerate(zip(EDGES[:-1], EDGES[1:]))]
    rows.append(("all", total[args.window].sum(), total[1].sum(), counts.sum()))
    for name, streamed, alone, n in rows:
        a, b = streamed / max(n, 1), alone / max(n, 1)
        print(f"| {name} | {n / counts.sum():.2f} | {a:.5f} | {b:.5f} | {a / b:.3f} |")


if __name__ == "__main__":
    main()
