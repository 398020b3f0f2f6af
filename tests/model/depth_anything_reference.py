"""Fabricated public checkpoints and a minimal reference forward of Depth Anything V2.

`fabricate` builds a state dict with exactly the names and shapes of a released file (from
tests/fixtures/depth_anything_keys.json, a copy of shared/fixtures/depth_anything_keys.json, and
tests/fixtures/dino_official_keys.json) and random values scaled so activations stay O(1).

`reference_inverse_depth` is written here from the published architecture (DINOv2 ViT, Oquab et
al. 2023; DPT, Ranftl et al. 2021, in the Depth Anything V2 configuration, Yang et al. 2024) and
reads the source's own tensor names, so it checks our mapping instead of re-using it.
"""
from __future__ import annotations

import json
import math
from pathlib import Path

import torch
import torch.nn.functional as F

FIXTURES = Path(__file__).parent.parent / "fixtures"
DEPTH_ANYTHING = json.loads((FIXTURES / "depth_anything_keys.json").read_text())
DINO = json.loads((FIXTURES / "dino_official_keys.json").read_text())["models"]
PATCH = 14


def source_shapes(name: str) -> dict[str, list[int]]:
    """{state-dict name: shape} of a released model (DA-V2, VDA or a DINOv2/v3 backbone)."""
    if name in DEPTH_ANYTHING:
        return DEPTH_ANYTHING[name]
    return dict(DINO[name]["state_dict"])


def fabricate(shapes: dict[str, list[int]], seed: int = 0, device: str = "cpu"
              ) -> dict[str, torch.Tensor]:
    """Random tensors of these names and shapes.

    Buffers get the values their models compute: DINOv3's key-bias mask (1, 0, 1 over q, k, v) and
    RoPE periods (100^(2k/(head_dim/2))).
    """
    g = torch.Generator().manual_seed(seed)
    state = {}
    for key, shape in shapes.items():
        if device == "meta":
            state[key] = torch.empty(shape, device="meta")
            continue
        if key.endswith("bias_mask"):
            d = shape[0] // 3
            value = torch.ones(shape)
            value[d:2 * d] = 0
        elif key.endswith("rope_embed.periods"):
            n = shape[0]
            value = 100.0 ** (2 * torch.arange(n, dtype=torch.float32) / (2 * n))
        elif ("norm" in key and key.endswith("weight")) or key.endswith(".gamma"):
            value = 1.0 + 0.1 * torch.randn(shape, generator=g)
            if key.endswith(".gamma"):
                value = value * 0.3
        elif len(shape) >= 2 and key.endswith("weight"):
            fan_in = math.prod(shape[1:])
            value = torch.randn(shape, generator=g) / math.sqrt(fan_in)
        else:
            value = 0.05 * torch.randn(shape, generator=g)
        state[key] = value
    return state


# -- DINOv2 ViT (Depth Anything V2's copy: no registers, interpolate_offset 0.1, no antialias) --


def _pos_embed(pe: torch.Tensor, gh: int, gw: int) -> torch.Tensor:
    m = int(math.sqrt(pe.shape[1] - 1))
    if gh * gw == m * m and gh == gw:
        return pe
    grid = pe[:, 1:].reshape(1, m, m, -1).permute(0, 3, 1, 2)
    grid = F.interpolate(grid, scale_factor=((gh + 0.1) / m, (gw + 0.1) / m), mode="bicubic",
                         align_corners=False)
    return torch.cat([pe[:, :1], grid.permute(0, 2, 3, 1).reshape(1, gh * gw, -1)], dim=1)


def _vit_block(sd: dict, p: str, x: torch.Tensor, heads: int) -> torch.Tensor:
    b, n, d = x.shape
    h = F.layer_norm(x, (d,), sd[p + "norm1.weight"], sd[p + "norm1.bias"], eps=1e-6)
    qkv = (h @ sd[p + "attn.qkv.weight"].T + sd[p + "attn.qkv.bias"]).reshape(b, n, 3, heads, -1)
    q, k, v = qkv[:, :, 0], qkv[:, :, 1], qkv[:, :, 2]  # [B, N, heads, hd]
    att = torch.einsum("bnhc,bmhc->bhnm", q, k) / math.sqrt(q.shape[-1])
    out = torch.einsum("bhnm,bmhc->bnhc", att.softmax(-1), v).reshape(b, n, d)
    x = x + sd[p + "ls1.gamma"] * (out @ sd[p + "attn.proj.weight"].T + sd[p + "attn.proj.bias"])
    h = F.layer_norm(x, (d,), sd[p + "norm2.weight"], sd[p + "norm2.bias"], eps=1e-6)
    h = F.gelu(h @ sd[p + "mlp.fc1.weight"].T + sd[p + "mlp.fc1.bias"])
    return x + sd[p + "ls2.gamma"] * (h @ sd[p + "mlp.fc2.weight"].T + sd[p + "mlp.fc2.bias"])


def reference_features(sd: dict, x: torch.Tensor, layers: list[int], heads: int
                       ) -> list[torch.Tensor]:
    """get_intermediate_layers(x, layers, norm=True) as maps [B, D, H/14, W/14]."""
    b, _, hh, ww = x.shape
    gh, gw = hh // PATCH, ww // PATCH
    p = "pretrained."
    tokens = F.conv2d(x, sd[p + "patch_embed.proj.weight"], sd[p + "patch_embed.proj.bias"],
                      stride=PATCH).flatten(2).transpose(1, 2)
    seq = torch.cat([sd[p + "cls_token"].expand(b, -1, -1), tokens], 1)
    seq = seq + _pos_embed(sd[p + "pos_embed"], gh, gw)
    out = []
    for i in range(max(layers) + 1):
        seq = _vit_block(sd, f"{p}blocks.{i}.", seq, heads)
        if i in layers:
            normed = F.layer_norm(seq, (seq.shape[-1],), sd[p + "norm.weight"],
                                  sd[p + "norm.bias"], eps=1e-6)
            out.append(normed[:, 1:].transpose(1, 2).reshape(b, -1, gh, gw))
    return out


# -- DPT head ----------------------------------------------------------------------------------


def _conv(sd: dict, p: str, x: torch.Tensor, **kw) -> torch.Tensor:
    return F.conv2d(x, sd[p + "weight"], sd.get(p + "bias"), **kw)


def _residual_unit(sd: dict, p: str, x: torch.Tensor) -> torch.Tensor:
    h = _conv(sd, p + "conv1.", F.relu(x), padding=1)
    return x + _conv(sd, p + "conv2.", F.relu(h), padding=1)


def _fusion_block(sd: dict, p: str, x: torch.Tensor, skip: torch.Tensor | None = None,
                  size: tuple[int, int] | None = None) -> torch.Tensor:
    if skip is not None:
        x = x + _residual_unit(sd, p + "resConfUnit1.", skip)
    x = _residual_unit(sd, p + "resConfUnit2.", x)
    if size is None:
        x = F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=True)
    else:
        x = F.interpolate(x, size=size, mode="bilinear", align_corners=True)
    return _conv(sd, p + "out_conv.", x)


def reference_dpt(sd: dict, features: list[torch.Tensor], head: str = "depth_head."
                  ) -> tuple[torch.Tensor, torch.Tensor]:
    """DPT head on the 4 token maps -> (path_1 = F_DPT, relative inverse depth at 14x the grid)."""
    levels = []
    for i, f in enumerate(features):
        f = _conv(sd, f"{head}projects.{i}.", f)
        if i in (0, 1):
            f = F.conv_transpose2d(f, sd[f"{head}resize_layers.{i}.weight"],
                                   sd[f"{head}resize_layers.{i}.bias"], stride=4 // (i + 1))
        elif i == 3:
            f = _conv(sd, f"{head}resize_layers.3.", f, stride=2, padding=1)
        levels.append(_conv(sd, f"{head}scratch.layer{i + 1}_rn.", f, padding=1))
    s = head + "scratch."
    l1, l2, l3, l4 = levels
    path = _fusion_block(sd, s + "refinenet4.", l4, size=l3.shape[-2:])
    path = _fusion_block(sd, s + "refinenet3.", path, l3, size=l2.shape[-2:])
    path = _fusion_block(sd, s + "refinenet2.", path, l2, size=l1.shape[-2:])
    path_1 = _fusion_block(sd, s + "refinenet1.", path, l1)
    gh, gw = features[0].shape[-2:]
    out = _conv(sd, s + "output_conv1.", path_1, padding=1)
    out = F.interpolate(out, size=(gh * PATCH, gw * PATCH), mode="bilinear", align_corners=True)
    out = F.relu(_conv(sd, s + "output_conv2.0.", out, padding=1))
    return path_1, F.relu(_conv(sd, s + "output_conv2.2.", out))
