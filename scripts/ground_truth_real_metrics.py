"""Score the ground truth of generated sequences with hcdp eval-real's depth metrics.

What a correct depth map scores on the real-footage rows (docs/evaluation.md, "What a correct depth
map scores"): the person's GT depth and the ground's (`hcdp synth --ground-share`) as one map, the
photograph above the horizon left out, on frames 0, the middle and the last of each sequence with a
ground covering at least --min-ground of the image.

    python scripts/ground_truth_real_metrics.py gen/video2g
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from hcdp_training.data import list_sequences, read_frame
from hcdp_training.real import metrics, reference
import numpy as np


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("root", type=Path, help="a folder of sequences written by hcdp synth")
    parser.add_argument("--min-ground", type=float, default=0.2,
                        help="share of the image the ground must cover for a frame to count")
    args = parser.parse_args()
    hits = total = 0
    ramps, order = [], []
    for seq in list_sequences(args.root):
        meta = json.loads((seq / "meta.json").read_text())
        if "ground" not in meta["controls"]:
            continue
        last = int(meta["frames"]) - 1
        for t in sorted({0, last // 2, last}):
            f = read_frame(seq, t)
            if np.isfinite(f["ground_depth"]).mean() < args.min_ground:
                continue
            depth = np.where(np.isfinite(f["depth"]), f["depth"], f["ground_depth"])
            n_hit, n_all = metrics.nearer_counts(depth, f["mask"], reference.min_area(depth.shape))
            hits, total = hits + n_hit, total + n_all
            ramps.append(metrics.ramp_share(depth))
            order.append(metrics.recedes_upward(depth, f["mask"]))
    if not ramps:
        raise SystemExit(f"no frame with a ground covering {args.min_ground:.0%} under "
                         f"{args.root}")
    print(f"{args.root}: {len(ramps)} frames; ramp share {np.nanmean(ramps):.3f}; people nearer "
          f"than their ring {hits}/{total} = {hits / max(total, 1):.3f}; frames farther at the "
          f"top than the bottom {np.nanmean(order):.3f}")


if __name__ == "__main__":
    main()
