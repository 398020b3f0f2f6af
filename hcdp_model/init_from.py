"""`hcdp init-from SOURCE --preset P --out DIR`: our model from a public checkpoint.

Sources (plain state dicts, read with torch.load(weights_only=True) or safetensors):
  depth_anything_v2     Depth Anything V2 S/B/L: `pretrained.*` (DINOv2) + `depth_head.*` (DPT)
  video_depth_anything  Video Depth Anything S/B: `pretrained.*` + `head.*` (DPT + motion modules)
  dinov2, dinov3        the official backbone releases (encoder only)
The encoder, the DPT decoder (reassemble + fusion) and, with `decoder.depth_head: depth_anything`,
the depth head are copied tensor for tensor (`mapping_table`); every other block keeps its fresh
initialisation, except the prior's psi, which is zeroed so F'_DPT = F_DPT until training moves it:
the converted model then computes the source's depth (through `heads.depth_from_inverse`).
Every source tensor is either mapped or ignored for a stated reason; anything else is an error.
See docs/model.md ("Starting from Depth Anything") for the table and what cannot be mapped.
"""
from __future__ import annotations

import argparse
from dataclasses import dataclass, field
import hashlib
import json
from pathlib import Path
import sys

import torch

from .checkpoint import save_checkpoint
from .config import ConfigError, ModelConfig, preset, PRESETS
from .model import HCDPModel
from .pretrained import BackboneLoadError, read_state_dict, resize_pos_embed

# DPT head prefix of each Depth Anything family, after read_state_dict strips "pretrained.".
HEAD_PREFIX = {"depth_anything_v2": "depth_head.", "video_depth_anything": "head."}
SIZES = {384: ("vits", "small"), 768: ("vitb", "base"), 1024: ("vitl", "large")}
REPORT_NAME = "init_report.json"


class InitError(RuntimeError):
    """The source file is not a checkpoint we can map onto the requested model."""


@dataclass
class Source:
    """What a state dict looks like: its family, the backbone inside it and its size."""

    family: str  # depth_anything_v2 | video_depth_anything | dinov2 | dinov3 | an unsupported kind
    backbone: str = ""  # dinov2 | dinov3
    embed_dim: int = 0
    depth: int = 0
    registers: int = 0
    swiglu: bool = False

    @property
    def name(self) -> str:
        size = SIZES.get(self.embed_dim, (f"{self.embed_dim}-d",))[0]
        regs = "_reg" if self.family == "dinov2" and self.registers else ""
        return f"{self.family}_{size}{regs}" if self.backbone else self.family

    @property
    def supported(self) -> bool:
        return bool(self.backbone) and not self.swiglu


@dataclass
class InitReport:
    source: str
    looks_like: str
    mapped: dict[str, str] = field(default_factory=dict)    # our name -> source name
    ignored: dict[str, str] = field(default_factory=dict)   # source name -> why
    resized: list[str] = field(default_factory=list)
    fresh: list[str] = field(default_factory=list)          # our blocks left freshly initialised
    zeroed: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {"source": self.source, "looks_like": self.looks_like, "mapped": self.mapped,
                "ignored": self.ignored, "resized": self.resized, "fresh": self.fresh,
                "zeroed": self.zeroed}

    def __str__(self) -> str:
        reasons: dict[str, int] = {}
        for why in self.ignored.values():
            reasons[why] = reasons.get(why, 0) + 1
        lines = [f"{self.source}: looks like {self.looks_like}; mapped {len(self.mapped)} tensors"]
        lines += [f"  resized: {r}" for r in self.resized]
        lines += [f"  ignored {n}: {why}" for why, n in reasons.items()]
        lines.append(f"  freshly initialised: {', '.join(self.fresh) or 'nothing'}")
        if self.zeroed:
            lines.append(f"  zero-initialised: {', '.join(self.zeroed)}")
        return "\n".join(lines)


def identify(state: dict[str, torch.Tensor]) -> Source:
    """Guess the family of a state dict (prefixes already stripped by read_state_dict)."""
    keys = set(state)
    if any(k.startswith(("reassemble.", "dpt_fusion.", "heads.")) for k in keys):
        return Source("an hcdp checkpoint (load it directly: --checkpoint, or model.init)")
    if any(k.startswith(("embeddings.", "layer.", "backbone.embeddings.")) or ".layer." in k
           for k in keys):
        return Source("a Hugging Face transformers checkpoint (convert the original release .pth)")
    if "patch_embed.proj.weight" not in keys or "blocks.0.norm1.weight" not in keys:
        return Source("none of DA-V2, VDA, DINOv2 or DINOv3")
    if any(k.startswith("head.motion_modules.") for k in keys):
        family = "video_depth_anything"
    elif any(k.startswith("depth_head.") for k in keys):
        family = "depth_anything_v2"
    else:
        family = "dinov3" if "rope_embed.periods" in keys else "dinov2"
    backbone = "dinov3" if "rope_embed.periods" in keys or "storage_tokens" in keys else "dinov2"
    depth = 1 + max(int(k.split(".")[1]) for k in keys if k.startswith("blocks."))
    registers = state["register_tokens"].shape[1] if "register_tokens" in keys else 0
    swiglu = any(k.startswith("blocks.0.mlp.w") for k in keys)
    return Source(family, backbone, state["patch_embed.proj.weight"].shape[0], depth,
                  registers, swiglu)


def model_config(source: Source, preset_name: str, resolution: int = 0) -> ModelConfig:
    """Return the preset in the source's backbone family.

    With its registers and depth-head layout.
    """
    if not source.supported:
        what = (f"{source.name}, whose SwiGLU MLP our encoder does not implement" if source.swiglu
                else source.family)
        raise InitError(f"expected a Depth Anything V2, Video Depth Anything, DINOv2 or DINOv3 "
                        f"checkpoint; the file looks like {what}")
    cfg = preset(preset_name, source.backbone)
    b = cfg.backbone
    if (source.embed_dim, source.depth) != (b.embed_dim, b.depth):
        hint = (f"use --preset {SIZES[source.embed_dim][1]}" if source.embed_dim in SIZES
                else "no shipped preset has that encoder")
        raise InitError(f"preset {preset_name} has a {b.embed_dim}-d, {b.depth}-block encoder but "
                        f"the file looks like {source.name} ({source.embed_dim}-d, {source.depth} "
                        f"blocks): {hint}")
    if source.backbone == "dinov2":
        b.num_register_tokens = source.registers
    if source.family in HEAD_PREFIX:
        cfg.decoder.depth_head = "depth_anything"
    if resolution:
        cfg.resolution = resolution
    try:
        return cfg.validate()
    except ConfigError as err:
        raise InitError(f"--resolution {resolution}: {err}") from err


def mapping_table(head: str) -> list[tuple[str, str]]:
    """(our module prefix, source module prefix) pairs for a Depth Anything checkpoint.

    For the DPT decoder and depth head; the checkpoint's head lives under `head` ("depth_head." or
    "head.").
    """
    s = head + "scratch."
    pairs = []
    for i in range(4):
        pairs.append((f"reassemble.projects.{i}.", f"{head}projects.{i}."))
        if i != 2:  # level 2 is an identity in both
            pairs.append((f"reassemble.resize_layers.{i}.", f"{head}resize_layers.{i}."))
        pairs.append((f"reassemble.layers_rn.{i}.", f"{s}layer{i + 1}_rn."))
        ours, theirs = f"dpt_fusion.refinenets.{i}.", f"{s}refinenet{i + 1}."
        if i < 3:  # the coarsest block has no skip input
            pairs.append((ours + "res_skip.", theirs + "resConfUnit1."))
        pairs.append((ours + "res_out.", theirs + "resConfUnit2."))
        pairs.append((ours + "out_conv.", theirs + "out_conv."))
    pairs.append(("heads.depth.output_conv1.", f"{s}output_conv1."))
    pairs.append(("heads.depth.output_conv2.", f"{s}output_conv2."))
    return pairs


def _ignore_reason(key: str, source: Source) -> str | None:
    head = HEAD_PREFIX.get(source.family, "")
    if key.endswith(".attn.qkv.bias_mask"):
        return "DINOv3 key-bias mask: our attention always zeroes the key slice of the qkv bias"
    if key.startswith("local_cls_norm."):
        return "DINOv3 local-crop class-token norm: used only in training"
    if head and key.startswith(f"{head}scratch.refinenet4.resConfUnit1."):
        return "Depth Anything's refinenet4 skip unit: built but never called (no skip input)"
    if key.startswith("head.motion_modules."):
        return ("VDA motion module: other positions in the DPT, absolute time encoding for up "
                "to 32 frames; not mapped onto our relative-bias temporal blocks (stage 2 adds "
                "them)")
    return None


def _check_bias_mask(key: str, mask: torch.Tensor) -> None:
    d = mask.shape[0] // 3
    if mask.device.type == "meta":
        return
    expected = torch.ones_like(mask)
    expected[d:2 * d] = 0
    if not torch.equal(mask, expected):
        raise InitError(f"{key}: expected 1 on the query and value slices and 0 on the key slice, "
                        f"got another mask; our attention cannot express it")


def map_state(state: dict[str, torch.Tensor], model: HCDPModel, source: Source,
              path: str = "state dict") -> tuple[dict[str, torch.Tensor], InitReport]:
    """Source tensors -> {our name: tensor}.

    Raises InitError unless every source tensor is mapped or ignored for a reason, and every tensor
    we expect from the source is there with its shape.
    """
    report = InitReport(path, source.name)
    own = model.state_dict()
    wanted: dict[str, str] = {f"encoder.{k}": k for k in model.encoder.state_dict()}
    if source.family in HEAD_PREFIX:
        for ours, theirs in mapping_table(HEAD_PREFIX[source.family]):
            wanted.update({k: theirs + k[len(ours):] for k in own if k.startswith(ours)})
    mapped: dict[str, torch.Tensor] = {}
    problems = []
    for ours, theirs in wanted.items():
        if theirs not in state:
            problems.append(f"missing {theirs} (for {ours})")
            continue
        value = state[theirs]
        if theirs == "pos_embed" and value.shape != own[ours].shape:
            value = resize_pos_embed(value, model.encoder.grid, source.registers > 0)
            report.resized.append(
                f"pos_embed {tuple(state[theirs].shape)} -> {tuple(value.shape)}")
        if value.shape != own[ours].shape:
            problems.append(
                f"{theirs} {tuple(value.shape)} vs our {ours} {tuple(own[ours].shape)}")
            continue
        mapped[ours] = value
        report.mapped[ours] = theirs
    consumed = set(report.mapped.values())
    for key in state:
        if key in consumed:
            continue
        reason = _ignore_reason(key, source)
        if reason is None:
            problems.append(f"unexpected {key} {tuple(state[key].shape)}")
            continue
        if key.endswith(".attn.qkv.bias_mask"):
            _check_bias_mask(key, state[key])
        report.ignored[key] = reason
    if problems:
        more = f"; ... (+{len(problems) - 5})" if len(problems) > 5 else ""
        shown = "; ".join(problems[:5]) + more
        raise InitError(f"{path} looks like {source.name}, but {len(problems)} tensors do not fit "
                        f"the {model.cfg.preset} model: {shown}")
    covered = {k.split(".")[0] for k in mapped}
    report.fresh = [name for name in model.block_modules() if name not in covered]
    if source.family in HEAD_PREFIX:
        report.fresh.append("heads.normal, heads.mask, heads.depth.fused (zero)")
    return mapped, report


def convert(state: dict[str, torch.Tensor], preset_name: str, resolution: int = 0, seed: int = 0,
            path: str = "state dict", device: str = "cpu") -> tuple[HCDPModel, InitReport]:
    """Build the preset in the source's layout (seeded fresh parts) and copy the mapped tensors in.

    device="meta" checks names and shapes only (the large models without their memory).
    """
    source = identify(state)
    cfg = model_config(source, preset_name, resolution)
    torch.manual_seed(seed)
    with torch.device(device):
        model = HCDPModel(cfg)
    mapped, report = map_state(state, model, source, path)
    model.load_state_dict(mapped, strict=False, assign=device == "meta")
    if model.human_prior is not None and source.family in HEAD_PREFIX:
        with torch.no_grad():
            model.human_prior.psi.weight.zero_()
            model.human_prior.psi.bias.zero_()
        report.zeroed.append("human_prior.psi (F'_DPT = F_DPT until trained)")
    return model.eval(), report


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("source",
                        help="DA-V2 / VDA / DINOv2 / DINOv3 weights (.pth or .safetensors)")
    parser.add_argument("--preset", required=True, choices=PRESETS,
                        help="our preset of the same size (S: small, B: base, L: large)")
    parser.add_argument("--out", required=True,
                        help="checkpoint directory to write (must not exist)")
    parser.add_argument("--resolution", type=int, default=0,
                        help="internal resolution (multiple of the patch); 0 = the preset's")
    parser.add_argument("--seed", type=int, default=0,
                        help="seed of the freshly initialised blocks")


def run(args: argparse.Namespace) -> int:
    out = Path(args.out)
    if out.exists():
        print(f"hcdp init-from: {out} exists; expected a new directory", file=sys.stderr)
        return 2
    try:
        state = read_state_dict(args.source)
        model, report = convert(state, args.preset, args.resolution, args.seed, str(args.source))
    except (BackboneLoadError, InitError) as err:
        print(f"hcdp init-from: {err}", file=sys.stderr)
        return 2
    save_checkpoint(model, out, metadata={"init_from": Path(args.source).name,
                                          "source_family": report.looks_like})
    record = {**report.to_dict(), "source_sha256": _sha256(Path(args.source))}
    (out / REPORT_NAME).write_text(json.dumps(record, indent=1))
    print(f"{report}\nwrote {out} (mapping in {out / REPORT_NAME})")
    return 0
