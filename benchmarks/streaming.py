"""Per-frame latency of streaming inference vs a single-frame model vs naive window recomputation.

    python benchmarks/streaming.py [--preset tiny | --checkpoint DIR] [--windows 8 16 32]
        [--rounds 15] [--threads 2] [--json]

All three run the same network weights on the same preprocessed frames, interleaved round by round
so background load on a noisy machine hits them alike; medians are reported with same-run ratios:
  (a) single   — the stage-1 model (no temporal blocks), one frame per call;
  (b) stream W — the torch backend's step (InPlaceStreamingStep: W-1 frame key/value ring buffer
  updated in
      place), one frame per call; `--functional` adds export's StreamingStep (cache copied per
      frame);
  (c) naive W  — recompute the causal forward over the last W frames for every new frame.
"""
from __future__ import annotations

import argparse
import copy
import json
import platform
import statistics
import time

from hcdp_model.backends.step import InPlaceStreamingStep, StreamingStep
from hcdp_model.checkpoint import load_checkpoint
from hcdp_model.config import preset
from hcdp_model.model import HCDPModel
import torch


def _time(fn) -> float:
    start = time.perf_counter()
    fn()
    return (time.perf_counter() - start) * 1e3


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="tiny")
    parser.add_argument("--checkpoint",
                        help="time this stage-2 checkpoint (e.g. data/models/default) instead of "
                             "a preset with fresh temporal blocks; its single-frame model is the "
                             "same weights without temporal blocks, and a fused temporal block "
                             "adds stream_W_without_fused rows, a selfie prior at several "
                             "zooms (prior.selfie_zooms) single_zoom_1 and stream_W_zoom_1 rows "
                             "(the same model with the selfie network at zoom 1 only)")
    parser.add_argument("--windows", type=int, nargs="+", default=[8, 16, 32])
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--naive", action=argparse.BooleanOptionalAction, default=True,
                        help="also time naive recomputation (slow: W frames per call)")
    parser.add_argument("--functional", action="store_true",
                        help="also time the functional step that export compiles (StreamingStep)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    if args.checkpoint:
        temporal = load_checkpoint(args.checkpoint).eval()
        temporal.set_temporal_mode("causal")
        cfg = temporal.cfg
        single = copy.deepcopy(temporal)
        single.temporal_blocks = single.fused_temporal = None
    else:
        cfg = preset(args.preset)
        single = HCDPModel(cfg).eval()
        temporal = copy.deepcopy(single)
        temporal.insert_temporal_blocks("causal")
    without_fused = None
    if temporal.fused_temporal is not None:
        without_fused = copy.deepcopy(temporal)
        without_fused.fused_temporal = None
    zoom_1 = None
    prior = temporal.human_prior
    if prior is not None and prior.selfie is not None and tuple(prior.zooms) != (1.0,):
        zoom_1 = copy.deepcopy(temporal)
        zoom_1.set_selfie_zooms((1.0,))
    s = cfg.resolution
    frames = torch.randn(max(args.windows) + args.rounds + 1, 1, 3, s, s)

    single_step = StreamingStep(single, 1)
    streams = {f"stream_{w}": InPlaceStreamingStep(temporal, w) for w in args.windows}
    if without_fused is not None:
        streams.update({f"stream_{w}_without_fused": InPlaceStreamingStep(without_fused, w)
                        for w in args.windows})
    singles = {"single": single_step}
    if zoom_1 is not None:
        single_zoom_1 = copy.deepcopy(single)
        single_zoom_1.set_selfie_zooms((1.0,))
        singles["single_zoom_1"] = StreamingStep(single_zoom_1, 1)
        streams.update({f"stream_{w}_zoom_1": InPlaceStreamingStep(zoom_1, w)
                        for w in args.windows})
    if args.functional:
        streams.update({f"functional_{w}": StreamingStep(temporal, w) for w in args.windows})
    states = {name: stream.init_state() for name, stream in streams.items()}
    times: dict[str, list[float]] = {**{name: [] for name in singles},
                                     **{name: [] for name in streams}}
    if args.naive:
        times.update({f"naive_{w}": [] for w in args.windows})

    with torch.inference_mode():
        # Warm up and fill every cache to its full window so the timed calls attend over W frames.
        for i in range(max(args.windows)):
            for step in singles.values():
                step(frames[i])
            for name, stream in streams.items():
                _, _, _, *states[name] = stream(frames[i], *states[name])
        for r in range(args.rounds):
            i = max(args.windows) + r
            for name, step in singles.items():
                times[name].append(_time(lambda: step(frames[i])))
            for name, stream in streams.items():
                def stream_once(name=name, stream=stream):
                    _, _, _, *states[name] = stream(frames[i], *states[name])
                times[name].append(_time(stream_once))
            for w in args.windows:
                if args.naive:
                    clip = frames[i - w + 1:i + 1].transpose(0, 1)  # [1, W, 3, S, S]
                    times[f"naive_{w}"].append(_time(lambda: temporal(clip, window=w)))

    median = {k: statistics.median(v) for k, v in times.items()}
    result = {
        "preset": args.checkpoint or args.preset, "resolution": s, "threads": args.threads,
        "rounds": args.rounds,
        "cpu": platform.processor() or platform.machine(), "torch": torch.__version__,
        "median_ms": median,
        "ratio_streaming_vs_single": {w: median[f"stream_{w}"] / median["single"]
                                      for w in args.windows},
    }
    if args.naive:
        result["ratio_naive_vs_streaming"] = {w: median[f"naive_{w}"] / median[f"stream_{w}"]
                                              for w in args.windows}
    if args.json:
        print(json.dumps(result))
        return
    model_name = args.checkpoint or f"{args.preset} preset"
    print(f"{model_name} at {s}x{s}, CPU, {args.threads} threads, median of {args.rounds} "
          "interleaved rounds")
    print(f"{'method':<26}{'ms/frame':>10}{'vs single':>11}")
    for name, ms in median.items():
        print(f"{name:<26}{ms:>10.1f}{ms / median['single']:>11.2f}")


if __name__ == "__main__":
    main()
