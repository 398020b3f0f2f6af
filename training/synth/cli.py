"""`hcdp synth`: generate synthetic human sequences (or static samples) with exact ground truth."""
from __future__ import annotations

import argparse
import sys

from hcdp_training.synth.generate import generate_dataset, SynthConfig
from hcdp_training.synth.motion import MOTIONS


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", required=True,
                        help="output folder (a sub-folder per sequence); must be empty or absent")
    parser.add_argument("--resume", action="store_true",
                        help="finish the run recorded in OUT/synth_config.json (same settings): "
                             "render only the sequences without a meta.json")
    parser.add_argument("--sequences", type=int, default=4,
                        help="number of sequences (or static samples)")
    parser.add_argument("--frames", type=int, default=16,
                        help="frames per sequence (1 with --static)")
    parser.add_argument("--size", type=int, nargs=2, default=(256, 256), metavar=("H", "W"),
                        help="image size")
    parser.add_argument("--fps", type=float, default=15.0, help="frame rate of the sampled motion")
    parser.add_argument("--seed", type=int, default=0, help="master seed; same seed, same bytes")
    parser.add_argument("--flow-strides", type=int, default=2,
                        help="render forward/backward flow for strides 1..S (clips may use stride "
                             "<= S)")
    parser.add_argument("--static", action="store_true",
                        help="static samples: one frame each, face / upper-body / full-body views")
    parser.add_argument("--max-people", type=int, default=3,
                        help="at most this many people per frame (1..3)")
    parser.add_argument("--motions", nargs="+", default=list(MOTIONS) + ["mix"],
                        choices=list(MOTIONS) + ["mix"],
                        help="motions to sample from ('mix' cross-fades two of the others given, "
                             "or of all if fewer than two are given)")
    parser.add_argument("--far-share", type=float, default=0.0,
                        help="share of sequences seen from far: people 12-50 %% of the image "
                             "height, anywhere in the frame, camera 0-40 deg above them")
    parser.add_argument("--ground-share", type=float, default=0.0,
                        help="share of sequences whose people stand on a textured ground plane "
                             "(grass, gravel, paving, tiles), written with its depth "
                             "(ground_depth)")
    parser.add_argument("--workers", type=int, default=1, help="worker processes")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def summary_line(out: str, config: SynthConfig, summary: dict) -> str:
    """Return the closing line of `hcdp synth`."""
    kind = "static samples" if config.static else f"sequences x {config.frames} frames"
    reused = summary["sequences"] - summary["rendered_sequences"]
    resumed = f", {reused} already there" if reused else ""
    return (f"hcdp synth: {summary['sequences']} {kind} ({config.height}x{config.width}, seed "
            f"{config.seed}) in {out}{resumed}; rendered {summary['rendered_frames']} frames in "
            f"{summary['seconds']:.1f} s ({summary['frames_per_second']:.1f} frames/s, "
            f"{config.workers} worker(s)); dataset card: {out}/CARD.md")


def run(args: argparse.Namespace) -> int:
    config = SynthConfig(out=args.out, sequences=args.sequences,
                         frames=1 if args.static else args.frames, height=args.size[0],
                         width=args.size[1], fps=args.fps, seed=args.seed,
                         flow_strides=args.flow_strides, static=args.static,
                         max_people=args.max_people, motions=tuple(args.motions),
                         far_share=args.far_share,
                         ground_share=args.ground_share, workers=args.workers)
    try:
        summary = generate_dataset(config, progress=not args.no_progress, resume=args.resume)
    except (ValueError, OSError) as err:
        print(f"hcdp synth: {err}", file=sys.stderr)
        return 2
    print(summary_line(args.out, config, summary))
    return 0
