"""Where the flicker under per-frame nuisances enters the network (issue 17).

    python scripts/flicker_origin.py [--checkpoint DIR] [--data gen/heldout] [--sequences 4]
        [--frames 16] [--window W] [--perturb 7]

The same frames are fed with and without `FrameNuisance` (`hcdp eval --perturb`) to the two halves
of the network separately: the ViT path (encoder, reassemble, the DPT-scale temporal blocks) and
the per-frame paths that join after those blocks (the human prior added to F_DPT, the CNN branch).
Each case is scored like `hcdp eval` (ground-truth flow, the clean scene's ground truth) at the
streaming window and at window 1 with the same weights. If the flicker that nuisances add comes
through the per-frame paths, no temporal block at the DPT scales can remove it. Offline causal
forwards (equal to streaming, tests/model/test_streaming.py); the fused temporal block, if the
model has one, runs after both halves as it does in the product.
"""
from __future__ import annotations

import argparse
from pathlib import Path

from hcdp_model.backends.base import DEFAULT_WINDOW
from hcdp_model.checkpoint import load_checkpoint
from hcdp_model.model import HCDPModel
from hcdp_model.predictor import default_checkpoint
from hcdp_model.preprocess import preprocess
from hcdp_training.evaluate import load_sequence
from hcdp_training.metrics import evaluate_sequence, MetricAccumulator
import numpy as np
import torch

CASES = {"all clean": (False, False), "all with nuisances": (True, True),
         "nuisances on the ViT path only": (True, False),
         "nuisances on the prior + CNN branch only": (False, True)}
METRICS = ("RMSE", "AngleMean", "IoU", "OPW", "TC-RMSE", "TC-Mean")


def predict(model: HCDPModel, vit: torch.Tensor, per_frame: torch.Tensor,
            window: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Run one sequence [T,3,S,S] causally: `vit` frames feed the encoder, `per_frame` the rest.

    Returns depth [T,S,S] >= 0, unit normals [T,S,S,3] and the mask probability [T,S,S].
    """
    t = vit.shape[0]
    scales = model.encode(vit)
    scales = [block(x.unflatten(0, (1, t)), window).flatten(0, 1)
              for block, x in zip(model.temporal_blocks or [], scales)] or scales
    fused, side = model.fuse(per_frame, scales)
    if model.fused_temporal is not None:
        fused = model.fused_temporal(fused.unflatten(0, (1, t)), window).flatten(0, 1)
    out = model.predict(fused, side)
    normal = torch.nn.functional.normalize(out["normal"], dim=1)
    return (out["depth"][:, 0].clamp_min(0).numpy(), normal.permute(0, 2, 3, 1).numpy(),
            torch.sigmoid(out["mask_logits"][:, 0]).numpy())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", default=None, help="default: the bundled model")
    parser.add_argument("--data", default="gen/heldout")
    parser.add_argument("--sequences", type=int, default=4)
    parser.add_argument("--frames", type=int, default=16)
    parser.add_argument("--window", type=int, default=DEFAULT_WINDOW)
    parser.add_argument("--perturb", type=int, default=7, help="FrameNuisance seed")
    args = parser.parse_args()
    torch.set_grad_enabled(False)
    model = load_checkpoint(args.checkpoint or default_checkpoint()).eval()
    if model.temporal_blocks is not None:
        model.set_temporal_mode("causal")
    sequences = sorted(Path(args.data).glob("seq_*"))[:args.sequences]
    if not sequences:
        raise SystemExit(f"{args.data}: no seq_* folders (hcdp synth --out {args.data} ...)")
    windows = (args.window, 1)
    scores = {(case, w): MetricAccumulator() for case in CASES for w in windows}
    for directory in sequences:
        clean = load_sequence(directory, args.frames)
        noisy = load_sequence(directory, args.frames, perturb=args.perturb)
        x_clean = preprocess(clean.rgb, model.cfg.resolution)[0]
        x_noisy = preprocess(noisy.rgb, model.cfg.resolution)[0]
        for case, (vit_noisy, rest_noisy) in CASES.items():
            for w in windows:
                depth, normal, mask = predict(model, x_noisy if vit_noisy else x_clean,
                                              x_noisy if rest_noisy else x_clean, w)
                scores[(case, w)].add(evaluate_sequence(
                    depth, normal, mask, clean.flow_fwd, clean.depth, clean.normal, clean.mask,
                    clean.flow_bwd), directory.name)
    print(f"{len(sequences)} sequences x {args.frames} frames of {args.data}, nuisance seed "
          f"{args.perturb}")
    print("| inputs | W | " + " | ".join(METRICS) + " |")
    print("|---|---:|" + "---:|" * len(METRICS))
    for case in CASES:
        for w in windows:
            s = scores[(case, w)].summary()
            print(f"| {case} | {w} | " + " | ".join(f"{s[m]:.4g}" for m in METRICS) + " |")


if __name__ == "__main__":
    main()
