"""Copy a trained checkpoint into the repository as the bundled default model (fp16 weights).

    python scripts/bundle_model.py RUN/final data/models/default [--fused-window N]
        [--selfie-zooms Z [Z ...]]

The weights are stored in float16 (half the size; they are cast back to float32 on load) and the
checkpoint's training metadata is kept. `--fused-window N` lets the fused temporal block attend
over N frames at inference instead of the window it was trained with (same weights; the config
records N). `--selfie-zooms` sets the scales the selfie prior's network runs at
(prior.selfie_zooms; same weights). Prints the largest output difference against the fp32
original on random frames so the cast is checked every time.
"""
from __future__ import annotations

import argparse

from hcdp_model.checkpoint import load_checkpoint, resolve_checkpoint, save_checkpoint
from safetensors import safe_open
import torch


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("source")
    parser.add_argument("destination")
    parser.add_argument("--fused-window", type=int, default=None, metavar="N",
                        help="frames the fused temporal block attends over (default: as trained)")
    parser.add_argument("--selfie-zooms", type=float, nargs="+", default=None, metavar="Z",
                        help="scales the selfie network runs at, the person logits' maximum "
                             "(default: as trained)")
    args = parser.parse_args()
    weights, _ = resolve_checkpoint(args.source)
    with safe_open(str(weights), "pt") as f:
        metadata = dict(f.metadata() or {})
    model = load_checkpoint(args.source).eval()
    if args.fused_window is not None:
        model.set_fused_window(args.fused_window)
    if args.selfie_zooms is not None:
        model.set_selfie_zooms(tuple(args.selfie_zooms))
    save_checkpoint(model, args.destination, metadata={**metadata, "stored_dtype": "float16"},
                    dtype=torch.float16)
    bundled = load_checkpoint(args.destination).eval()
    s = model.cfg.resolution
    clip = torch.randn(1, 3, 3, s, s, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        a, b = model(clip), bundled(clip)
    diff = {k: float((a[k] - b[k]).abs().max()) for k in a}
    print(f"bundled {args.source} -> {args.destination}; max |fp32 - fp16-stored| per output: "
          f"{diff}")


if __name__ == "__main__":
    main()
