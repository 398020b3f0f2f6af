"""ViT encoder E_DINO with the parameter names of the official DINOv2 / DINOv3 releases.

State-dict names (so the released `.pth` files load directly; see docs/model.md for the table):
  patch_embed.proj, cls_token, mask_token, pos_embed (DINOv2), register_tokens (DINOv2 `_reg`),
  storage_tokens + rope_embed.periods (DINOv3), blocks.{i}.{norm1,attn.qkv,attn.proj,ls1.gamma,
  norm2,mlp.fc1,mlp.fc2,ls2.gamma}, norm.
The encoder runs at one fixed square resolution, so DINOv2's absolute positional embedding is
stored already resized to that grid (`pos_embed` [1, 1 + g*g, D]); `hcdp_model.pretrained` resizes
the released 37x37 table on load. DINOv3 uses RoPE on normalised patch-centre coordinates instead.
"""
from __future__ import annotations

import math

import torch
from torch import nn
import torch.nn.functional as F

from .config import BackboneConfig


class PatchEmbed(nn.Module):

    def __init__(self, patch_size: int, embed_dim: int) -> None:
        super().__init__()
        self.proj = nn.Conv2d(3, embed_dim, kernel_size=patch_size, stride=patch_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x).flatten(2).transpose(1, 2)  # [B, h*w, D], row-major


class LayerScale(nn.Module):

    def __init__(self, dim: int, init_value: float) -> None:
        super().__init__()
        self.gamma = nn.Parameter(torch.full((dim,), init_value))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gamma


class Mlp(nn.Module):

    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.gelu(self.fc1(x)))


class RopeEmbedding(nn.Module):
    """DINOv3 2-D rotary embedding.

    Periods base^(2k/(head_dim/2)), coordinates of patch centres normalised to [-1, 1] per axis,
    angles [y-freqs, x-freqs] tiled twice (NeoX half-split).
    """

    def __init__(self, head_dim: int, base: float) -> None:
        super().__init__()
        n = head_dim // 4
        self.register_buffer("periods",
                             base ** (2 * torch.arange(n, dtype=torch.float32) / (head_dim // 2)))

    def forward(self, grid_h: int, grid_w: int) -> tuple[torch.Tensor, torch.Tensor]:
        device = self.periods.device
        cy = (torch.arange(grid_h, device=device, dtype=torch.float32) + 0.5) / grid_h * 2 - 1
        cx = (torch.arange(grid_w, device=device, dtype=torch.float32) + 0.5) / grid_w * 2 - 1
        yy, xx = torch.meshgrid(cy, cx, indexing="ij")
        angles = 2 * math.pi * torch.cat(
            [yy.reshape(-1, 1) / self.periods, xx.reshape(-1, 1) / self.periods], dim=-1)
        angles = angles.repeat(1, 2)  # [h*w, head_dim]
        return angles.sin(), angles.cos()


def _rotate_half(x: torch.Tensor) -> torch.Tensor:
    half = x.shape[-1] // 2
    return torch.cat([-x[..., half:], x[..., :half]], dim=-1)


class Attention(nn.Module):

    def __init__(self, dim: int, num_heads: int, key_bias: bool) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        # DINOv3's qkv is "LinearKMaskedBias": the key slice of the bias is multiplied by zero.
        self.key_bias = key_bias

    def forward(self, x: torch.Tensor,
                rope: tuple[torch.Tensor, torch.Tensor] | None = None) -> torch.Tensor:
        b, n, d = x.shape
        bias = self.qkv.bias
        if not self.key_bias:
            bias = torch.cat([bias[:d], torch.zeros_like(bias[d:2 * d]), bias[2 * d:]])
        qkv = F.linear(x, self.qkv.weight, bias).reshape(b, n, 3, self.num_heads,
                                                         d // self.num_heads)
        q, k, v = qkv.permute(2, 0, 3, 1, 4)  # each [B, heads, N, head_dim]
        if rope is not None:
            sin, cos = rope
            prefix = n - sin.shape[0]
            q = torch.cat([q[:, :, :prefix], _apply_rope(q[:, :, prefix:], sin, cos)], dim=2)
            k = torch.cat([k[:, :, :prefix], _apply_rope(k[:, :, prefix:], sin, cos)], dim=2)
        out = F.scaled_dot_product_attention(q, k, v)
        return self.proj(out.transpose(1, 2).reshape(b, n, d))


def _apply_rope(x: torch.Tensor, sin: torch.Tensor, cos: torch.Tensor) -> torch.Tensor:
    dtype = x.dtype
    x = x.float()
    return (x * cos + _rotate_half(x) * sin).to(dtype)


class Block(nn.Module):

    def __init__(self, cfg: BackboneConfig) -> None:
        super().__init__()
        dim = cfg.embed_dim
        self.norm1 = nn.LayerNorm(dim, eps=cfg.norm_eps)
        self.attn = Attention(dim, cfg.num_heads, key_bias=cfg.family == "dinov2")
        self.ls1 = LayerScale(dim, cfg.layerscale_init)
        self.norm2 = nn.LayerNorm(dim, eps=cfg.norm_eps)
        self.mlp = Mlp(dim, int(dim * cfg.mlp_ratio))
        self.ls2 = LayerScale(dim, cfg.layerscale_init)

    def forward(self, x: torch.Tensor,
                rope: tuple[torch.Tensor, torch.Tensor] | None = None) -> torch.Tensor:
        x = x + self.ls1(self.attn(self.norm1(x), rope))
        return x + self.ls2(self.mlp(self.norm2(x)))


class VisionTransformer(nn.Module):
    """Return the final-normed patch tokens of 4 blocks as feature maps [B, D, g, g].

    The `get_intermediate_layers(..., reshape=True, norm=True)` convention of Depth Anything V2.
    """

    def __init__(self, cfg: BackboneConfig, resolution: int) -> None:
        super().__init__()
        self.cfg = cfg
        self.grid = resolution // cfg.patch_size
        dim = cfg.embed_dim
        self.patch_embed = PatchEmbed(cfg.patch_size, dim)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.mask_token = nn.Parameter(torch.zeros(1, dim))  # kept so official files load strictly
        if cfg.family == "dinov2":
            self.pos_embed = nn.Parameter(torch.zeros(1, 1 + self.grid * self.grid, dim))
            if cfg.num_register_tokens:
                self.register_tokens = nn.Parameter(torch.zeros(1, cfg.num_register_tokens, dim))
        else:
            self.storage_tokens = nn.Parameter(torch.zeros(1, cfg.num_register_tokens, dim))
            self.rope_embed = RopeEmbedding(dim // cfg.num_heads, cfg.rope_base)
        self.blocks = nn.ModuleList([Block(cfg) for _ in range(cfg.depth)])
        self.norm = nn.LayerNorm(dim, eps=cfg.norm_eps)
        self._init_weights()

    @property
    def num_prefix_tokens(self) -> int:
        return 1 + self.cfg.num_register_tokens

    def _init_weights(self) -> None:
        nn.init.trunc_normal_(self.cls_token, std=0.02)
        if hasattr(self, "pos_embed"):
            nn.init.trunc_normal_(self.pos_embed, std=0.02)
        for name in ("register_tokens", "storage_tokens"):
            if hasattr(self, name):
                nn.init.trunc_normal_(getattr(self, name), std=0.02)
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.trunc_normal_(m.weight, std=0.02)
                nn.init.zeros_(m.bias)

    def tokens(self, x: torch.Tensor) -> torch.Tensor:
        """Image [B,3,H,W] -> token sequence [B, prefix + g*g, D]: [cls, registers, patches]."""
        b = x.shape[0]
        patches = self.patch_embed(x)
        cls = self.cls_token.expand(b, -1, -1)
        if self.cfg.family == "dinov2":
            seq = torch.cat([cls, patches], dim=1) + self.pos_embed
            if self.cfg.num_register_tokens:
                seq = torch.cat([seq[:, :1], self.register_tokens.expand(b, -1, -1), seq[:, 1:]],
                                dim=1)
            return seq
        return torch.cat([cls, self.storage_tokens.expand(b, -1, -1), patches], dim=1)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        b, _, h, w = x.shape
        gh, gw = h // self.cfg.patch_size, w // self.cfg.patch_size
        rope = self.rope_embed(gh, gw) if self.cfg.family == "dinov3" else None
        seq = self.tokens(x)
        wanted = set(self.cfg.intermediate_layers)
        features = []
        # Blocks after the last tapped one do not influence the output and are skipped.
        for i, block in enumerate(self.blocks[: max(wanted) + 1]):
            seq = block(seq, rope)
            if i in wanted:
                patches = self.norm(seq)[:, self.num_prefix_tokens:]
                features.append(patches.transpose(1, 2).reshape(b, -1, gh, gw))
        return features
