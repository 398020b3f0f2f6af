"""Synthetic data generation speed: frames/s with every ground-truth output, at 256^2 and 512^2.

Runs `generate_dataset` (worker processes, each with its own anny body and EGL renderer) into a
temporary folder and prints frames/s. The time includes worker start-up (about 3 s per worker); the
default 8 sequences x 48 frames keep that to about a fifth of a 256^2 run. The load average is
printed too: on a shared machine the other processes' load lowers the rate.

    python benchmarks/synth_speed.py [--workers 2] [--sequences 8] [--frames 48] [--sizes 256 512]
    [--json]
"""
from __future__ import annotations

import argparse
import json
import os
import tempfile


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--sequences", type=int, default=8)
    parser.add_argument("--frames", type=int, default=48)
    parser.add_argument("--sizes", type=int, nargs="+", default=[256, 512])
    parser.add_argument("--flow-strides", type=int, default=2)
    parser.add_argument("--json", action="store_true",
                        help="print one JSON object instead of lines")
    args = parser.parse_args()

    import torch

    torch.set_num_threads(1)
    from hcdp_training.synth.generate import SynthConfig, generate_dataset

    results = []
    for size in args.sizes:
        load_before = os.getloadavg()[0]
        with tempfile.TemporaryDirectory() as out:
            config = SynthConfig(out=out, sequences=args.sequences, frames=args.frames, width=size,
                                 height=size,
                                 flow_strides=args.flow_strides, workers=args.workers)
            summary = generate_dataset(config)
        results.append({"size": size, "frames": summary["frames"],
                        "seconds": round(summary["seconds"], 2),
                        "frames_per_second": round(summary["frames_per_second"], 2),
                        "workers": args.workers,
                        "cpu_count": os.cpu_count(), "load_before": round(load_before, 2),
                        "load_after": round(os.getloadavg()[0], 2)})
        if not args.json:
            r = results[-1]
            print(f"{size}x{size}: {r['frames_per_second']:.2f} frames/s ({r['frames']} frames in "
                  f"{r['seconds']} s, {args.workers} workers, {r['cpu_count']} CPUs, load "
                  f"{r['load_before']} -> {r['load_after']})")
    if args.json:
        print(json.dumps({"benchmark": "synth_speed", "results": results}, indent=1))


if __name__ == "__main__":
    main()
