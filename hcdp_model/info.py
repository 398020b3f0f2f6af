"""`hcdp info`: parameters and GMACs per block of Figure 2, for a preset at a given input size.

GMACs are counted by torch's FlopCounterMode (matmuls, convolutions, attention) on the meta device,
so even `large` is measured in well under a second without allocating weights. The streaming
temporal attention is written as elementwise products over the cache (see
temporal.attend_slots), which the counter does not see, so its 2 x window x C MACs per
position (scores and weighted sum) are added by formula. The model runs at its fixed internal
resolution whatever the camera size, so --size changes only the letterbox, not the cost;
the per-frame count is the streaming cost with the temporal blocks attending over `--window`
frames. `--checkpoint` counts the architecture a checkpoint's config describes (the bundled model
has the fused temporal block and the selfie prior, which no preset has); no weight is read.
"""
from __future__ import annotations

import argparse
import json
import sys

import torch
from torch.utils.flop_counter import FlopCounterMode

from .backends.base import DEFAULT_WINDOW
from .backends.step import StreamingStep
from .checkpoint import CheckpointError, resolve_checkpoint
from .config import ModelConfig, preset, PRESETS, SELFIE_KINDS
from .model import HCDPModel
from .preprocess import Letterbox

# Paper, Table 17 (params in billions, GFLOPs).
PAPER_TABLE_17 = {"base": (0.097, 471), "large": (0.337, 753)}


def count(preset_name: str, height: int, width: int, window: int = DEFAULT_WINDOW,
          family: str = "dinov2") -> dict:
    """Count a preset (with temporal blocks) at a camera size."""
    cfg = preset(preset_name, family)
    cfg.temporal.enabled = True
    return count_config(cfg, height, width, window)


def count_config(cfg: ModelConfig, height: int, width: int,
                 window: int = DEFAULT_WINDOW) -> dict:
    """Count the model `cfg` describes, as it is (temporal blocks only if it has them)."""
    with torch.device("meta"):
        model = HCDPModel(cfg)
        step = StreamingStep(model, window)
        state = step.init_state(1, "meta")
        frame = torch.empty(1, 3, cfg.resolution, cfg.resolution)
    counter = FlopCounterMode(display=False)
    with counter:
        step(frame, *state)
    flops = counter.get_flop_counts()
    attention = ([2 * window * cfg.decoder.features * side * side for side in model.scale_sizes()]
                 if model.temporal_blocks is not None else [])
    # the fused block attends over its own slots at every pixel of the S x S fused map; with one
    # slot (W = 1) it is the identity and computes nothing
    slots = model.fused_temporal.slots(window) if model.fused_temporal is not None else 1
    fused = 2 * slots * cfg.fusion.channels * cfg.resolution ** 2 if slots > 1 else 0
    by_formula = {"temporal_blocks": sum(attention), "fused_temporal": fused}
    blocks = {}
    for name, module in model.block_modules().items():
        key = f"StreamingStep.model.{name}"
        # A ModuleList has no entry of its own: add up its direct children.
        keys = [key] if key in flops else [k for k in flops if k.rsplit(".", 1)[0] == key]
        blocks[name] = {
            "params": sum(p.numel() for p in module.parameters()),
            "gmacs": (sum(sum(flops[k].values()) for k in keys) / 2 + by_formula.get(name, 0))
            / 1e9,
        }
    total_params = sum(p.numel() for p in model.parameters())
    box = Letterbox.fit(height, width, cfg.resolution)
    return {
        "preset": cfg.preset,
        "family": cfg.backbone.family,
        "prior": cfg.prior.kind,
        "selfie_zooms": list(cfg.prior.selfie_zooms) if cfg.prior.kind in SELFIE_KINDS else None,
        "fused_temporal": model.fused_temporal is not None,
        "input_size": [height, width],
        "model_resolution": cfg.resolution,
        "letterbox": {"content": [box.new_h, box.new_w], "top": box.top, "left": box.left},
        "window": window,
        "blocks": blocks,
        "params": total_params,
        "gmacs": (counter.get_total_flops() / 2 + sum(attention) + fused) / 1e9,
        "paper_params_b": PAPER_TABLE_17.get(cfg.preset, (None, None))[0],
        "paper_gflops": PAPER_TABLE_17.get(cfg.preset, (None, None))[1],
    }


def selfie_zooms_label(info: dict) -> str:
    """' (selfie zooms 1, 2)' for a selfie prior at several scales, else ''."""
    zooms = info.get("selfie_zooms")
    if not zooms or zooms == [1.0]:
        return ""
    return " (selfie zooms " + ", ".join(f"{z:g}" for z in zooms) + ")"


def format_table(info: dict) -> str:
    lines = [f"hcdp {info['preset']} ({info['family']}): input "
             f"{info['input_size'][0]}x{info['input_size'][1]} -> model "
             f"{info['model_resolution']}x{info['model_resolution']} (content "
             f"{info['letterbox']['content'][0]}x{info['letterbox']['content'][1]}), streaming "
             f"window {info['window']}; prior {info['prior']}{selfie_zooms_label(info)}, "
             f"fused temporal block "
             f"{'yes' if info['fused_temporal'] else 'no'}",
             f"{'block':<18}{'params (M)':>12}{'GMACs':>10}"]
    for name, b in info["blocks"].items():
        lines.append(f"{name:<18}{b['params'] / 1e6:>12.3f}{b['gmacs']:>10.2f}")
    lines.append(f"{'total':<18}{info['params'] / 1e6:>12.3f}{info['gmacs']:>10.2f}"
                 f"   (= {2 * info['gmacs']:.1f} GFLOPs)")
    if info["paper_params_b"] is not None:
        ratio = info["params"] / (info["paper_params_b"] * 1e9)
        lines.append(f"{'paper Table 17':<18}{info['paper_params_b'] * 1e3:>12.1f}{'':>10}"
                     f"   ({info['paper_gflops']} GFLOPs; ours/paper params = {ratio:.2f})")
    return "\n".join(lines)


MAX_SIDE = 16384  # camera pixels per side
MAX_WINDOW = 1024  # frames; the node allows 64


def _int_in(low: int, high: int):
    def parse(text: str) -> int:
        value = int(text)
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"expected an integer in {low}..{high}, got {value}")
        return value

    parse.__name__ = "integer"  # argparse names the type in its message
    return parse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--preset", choices=PRESETS, default="tiny", help="network size preset")
    parser.add_argument("--family", choices=("dinov2", "dinov3"), default="dinov2",
                        help="encoder family: DINOv2 (patch 14) or DINOv3 (patch 16, RoPE)")
    parser.add_argument("--size", nargs=2, type=_int_in(1, MAX_SIDE), metavar=("H", "W"),
                        default=(480, 640), help="camera image size")
    parser.add_argument("--window", type=_int_in(1, MAX_WINDOW), default=DEFAULT_WINDOW,
                        help="streaming window (frames)")
    parser.add_argument("--checkpoint", default=None, metavar="PATH",
                        help="count the architecture of this checkpoint (directory, .safetensors "
                             "or its config) instead of a preset; e.g. data/models/default")
    parser.add_argument("--json", action="store_true",
                        help="print one JSON object instead of the table")


def run(args: argparse.Namespace) -> int:
    if args.checkpoint is not None:
        try:
            cfg = ModelConfig.load(resolve_checkpoint(args.checkpoint)[1])
        except (CheckpointError, ValueError, OSError) as err:
            print(f"hcdp info: {err}", file=sys.stderr)
            return 2
        info = count_config(cfg, args.size[0], args.size[1], args.window)
    else:
        info = count(args.preset, args.size[0], args.size[1], args.window, args.family)
    print(json.dumps(info) if args.json else format_table(info))
    return 0
