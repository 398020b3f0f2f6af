"""Measure how much body shape a model's normals carry on held-out renders (per frame, W=1).

For each scored frame, over the person (GT mask > 0.5), the mean angle to the GT normals of:
- the model's normals;
- the model's own mean direction on the person (its normals with the shape taken out);
- the GT's mean direction (the best flat person: one normal for every pixel, known from the GT);
- the normal facing the camera.
"shape gain" = flat model - model: the degrees the per-pixel variation earns. A map with no body
shape scores no better than its own flat version; docs/training.md (session 14) uses it to read
issue 16's "normals vary inside people" on renders, where the ground truth is known.

    python scripts/normal_shape.py --data gen/heldout data/models/default runs/X/final
"""
from __future__ import annotations

from hcdp_training.metrics import angular_error_deg
from heldout_frames import parse_arguments, predictions
import numpy as np
import torch

FACING = (0.0, 0.0, -1.0)  # OpenCV camera frame: the surface faces the camera along -z


def frame_angles(pred: np.ndarray, normal: np.ndarray,
                 mask: np.ndarray) -> dict[str, float] | None:
    """Mean angles (degrees) on the person of `pred` and the flat references; None under 200 px.

    `pred`, `normal` `[H,W,3]` unit normals, `mask` `[H,W]` soft GT mask.
    """
    gate = torch.from_numpy(mask > 0.5)
    if int(gate.sum()) < 200:
        return None
    p, g = (torch.from_numpy(x.astype(np.float32)).permute(2, 0, 1)[None] for x in (pred, normal))

    def flat(x: torch.Tensor) -> torch.Tensor:
        return x[0][:, gate].mean(1).view(1, 3, 1, 1).expand_as(x)

    candidates = {"model": p, "flat model": flat(p), "flat GT": flat(g),
                  "facing": torch.tensor(FACING).view(1, 3, 1, 1).expand_as(g)}
    return {name: float(angular_error_deg(x, g)[0, 0][gate].mean())
            for name, x in candidates.items()}


def main() -> None:
    args = parse_arguments(__doc__.splitlines()[0])
    for checkpoint in args.checkpoints:
        scores = [s for f, pred in predictions(checkpoint, args.data, args.frames)
                  if (s := frame_angles(pred.normals, f["normal"], f["mask"])) is not None]
        mean = {k: np.mean([s[k] for s in scores]) for k in scores[0]}
        print(f"{checkpoint}: {len(scores)} frames; mean angle on the person: "
              + ", ".join(f"{k} {v:.2f}" for k, v in mean.items())
              + f"; shape gain {mean['flat model'] - mean['model']:.2f}")


if __name__ == "__main__":
    main()
