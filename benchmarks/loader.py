"""Images per second the training data path delivers per loader worker, stage by stage.

    python benchmarks/loader.py --root gen/heldout [--size 224] [--frames 200] [--clip 4] [--json]

Times, in one process on one core (what one DataLoader worker does): reading a frame (meta.json,
PNG decode of rgb and mask, the ground-truth .npz), augmentation (`Augment`, the trainer's default
config), `resize_square` and the tensor conversion; then the dataset's __getitem__ as the trainer
builds it (stage 1: `StaticFrames`, stage 2: `VideoClips` of --clip frames), all with one thread.
Workers scale about linearly while there are free cores, so the workers needed to feed a GPU step
that consumes R images/s is R / (images/s per worker), the last line (R: --consume, default 740,
the small preset's stage-1 step at 224² on an H100, issue 19).
"""
from __future__ import annotations

import argparse
import json
import time

import cv2
from hcdp_training.augment import Augment
from hcdp_training.config import TrainConfig
from hcdp_training.data.datasets import resize_square, StaticFrames, to_tensors, VideoClips
from hcdp_training.data.format import list_sequences, read_frame, read_meta
import numpy as np
import torch


def per_second(fn, items: list, repeats: int = 3) -> float:
    """Items per second of `fn` over `items`, best of `repeats` passes (the least disturbed)."""
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        for item in items:
            fn(item)
        best = min(best, time.perf_counter() - start)
    return len(items) / best


def workers_needed(consume: float, per_worker: float) -> int:
    """Loader workers (one core each) whose images/s cover a step consuming `consume` images/s."""
    if per_worker <= 0:
        raise ValueError(f"expected a positive images/s per worker, got {per_worker}")
    return max(1, int(np.ceil(consume / per_worker)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", required=True, help="folder of hcdp sequences (meta.json each)")
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--frames", type=int, default=200, help="frames timed per stage")
    parser.add_argument("--clip", type=int, default=4, help="stage-2 clip length")
    parser.add_argument("--consume", type=float, default=740.0,
                        help="images/s the training step consumes (default: small, H100, 224²)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(1)
    cv2.setNumThreads(1)

    sequences = list_sequences(args.root)
    keys = [(s, t) for s in sequences for t in range(int(read_meta(s)["frames"]))][:args.frames]
    if not keys:
        raise SystemExit(f"no hcdp sequences under {args.root}")
    frames = [read_frame(s, t) for s, t in keys]
    augment_config = TrainConfig().data.augmentation
    augment = Augment(augment_config, rng=np.random.default_rng(0))
    rates = {
        "read_meta (meta.json)": per_second(lambda k: read_meta(k[0]), keys),
        "read rgb + mask PNG": per_second(
            lambda k: (cv2.imread(str(k[0] / "rgb" / f"{k[1]:06d}.png"), cv2.IMREAD_COLOR),
                       cv2.imread(str(k[0] / "mask" / f"{k[1]:06d}.png"),
                                  cv2.IMREAD_UNCHANGED)), keys),
        "read gt .npz": per_second(lambda k: dict(np.load(k[0] / "gt" / f"{k[1]:06d}.npz")), keys),
        "read_frame (all of it)": per_second(lambda k: read_frame(*k), keys),
        "augment": per_second(augment, frames),
        "resize_square": per_second(lambda f: resize_square(f, args.size), frames),
        "to_tensors": per_second(lambda f: to_tensors(resize_square(f, args.size)), frames),
    }
    static = StaticFrames(args.root, size=args.size, augment=augment)
    indices = list(range(min(len(static), args.frames)))
    rates["stage 1 item (StaticFrames + augment)"] = per_second(static.__getitem__, indices)
    try:
        clips = VideoClips(args.root, frames=args.clip, size=args.size, augment=augment)
        clip_items = list(range(min(len(clips), max(1, args.frames // args.clip))))
        rates[f"stage 2 clip of {args.clip} (VideoClips + augment), images/s"] = (
            args.clip * per_second(clips.__getitem__, clip_items))
    except ValueError as err:  # sequences too short for the clip
        print(f"stage 2 skipped: {err}")
    per_worker = rates["stage 1 item (StaticFrames + augment)"]
    result = {"root": args.root, "size": args.size, "frames": len(keys), "per_second": rates,
              "consume": args.consume,
              "workers_needed_stage1": workers_needed(args.consume, per_worker)}
    if args.json:
        print(json.dumps(result, indent=2))
        return
    print(f"training data path, one worker (1 thread), {len(keys)} frames of {args.root}, "
          f"size {args.size}")
    for name, rate in rates.items():
        print(f"  {name:<52s} {rate:9.1f} /s  ({1e3 / rate:6.2f} ms)")
    print(f"a step consuming {args.consume:g} images/s needs {result['workers_needed_stage1']} "
          f"stage-1 loader workers (one core each) at {per_worker:.0f} images/s per worker")


if __name__ == "__main__":
    main()
