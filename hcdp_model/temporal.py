"""Temporal blocks T (paper §3.2, in the style of AnimateDiff / Video Depth Anything).

Each block attends along time at every spatial position of one DPT scale:
    a = x + Attn(LN(x));  a = a + MLP(LN(a));  out = x + proj_out(a)
`proj_out` is zero-initialised, so a freshly inserted block is the identity and stage-2 training starts
from the stage-1 predictions. Time positions enter only as a learned bias per head and *relative*
offset t - s (no absolute encoding), which makes a sliding-window key/value cache exact: the streaming
`step` over a cache of the last W-1 frames equals the offline causal forward with window W.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .config import TemporalConfig

KVCache = tuple[torch.Tensor, torch.Tensor, torch.Tensor]  # keys, values [N, heads, W-1, hd]; valid [W-1]
# keys, values [N, heads, W-1, hd] in ring order; ages [W-1] long: frames since each slot was written, 0 = empty
RingCache = tuple[torch.Tensor, torch.Tensor, torch.Tensor]


class TemporalAttention(nn.Module):
    def __init__(self, dim: int, num_heads: int, max_relative_distance: int) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.max_rel = max_relative_distance
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        # bias[h, d + max_rel] for relative offset d = t_query - t_key, clipped to [-max_rel, max_rel]
        self.relative_bias = nn.Parameter(torch.zeros(num_heads, 2 * max_relative_distance + 1))

    def bias(self, offsets: torch.Tensor) -> torch.Tensor:
        """Bias for an integer tensor of offsets: [...] -> [heads, ...]."""
        return self.relative_bias[:, offsets.clamp(-self.max_rel, self.max_rel) + self.max_rel]

    def split(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        n, t, c = x.shape
        q, k, v = self.qkv(x).reshape(n, t, 3, self.num_heads, c // self.num_heads).permute(2, 0, 3, 1, 4)
        return q, k, v  # each [N, heads, T, hd]

    def attend(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask.to(q.dtype))
        n, h, t, hd = out.shape
        return self.proj(out.transpose(1, 2).reshape(n, t, h * hd))

    def forward(self, x: torch.Tensor, causal: bool, window: int | None) -> torch.Tensor:
        """x [N, T, C] -> [N, T, C]; causal with `window` W lets frame t see frames t-W+1 .. t."""
        t = x.shape[1]
        pos = torch.arange(t, device=x.device)
        offsets = pos[:, None] - pos[None, :]  # [T_query, T_key]
        allowed = torch.ones_like(offsets, dtype=torch.bool)
        if causal:
            allowed = offsets >= 0
            if window is not None:
                allowed &= offsets < window
        mask = self.bias(offsets).masked_fill(~allowed, float("-inf"))[None]  # [1, heads, T, T]
        return self.attend(*self.split(x), mask)


class TemporalBlock(nn.Module):
    def __init__(self, dim: int, cfg: TemporalConfig) -> None:
        super().__init__()
        self.causal = cfg.mode == "causal"
        self.norm1 = nn.LayerNorm(dim)
        self.attn = TemporalAttention(dim, cfg.num_heads, cfg.max_relative_distance)
        self.norm2 = nn.LayerNorm(dim)
        hidden = int(dim * cfg.mlp_ratio)
        self.mlp = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, dim))
        self.proj_out = nn.Linear(dim, dim)
        nn.init.zeros_(self.proj_out.weight)
        nn.init.zeros_(self.proj_out.bias)

    def _finish(self, x: torch.Tensor, attended: torch.Tensor) -> torch.Tensor:
        a = x + attended
        a = a + self.mlp(self.norm2(a))
        return x + self.proj_out(a)

    def forward(self, x: torch.Tensor, window: int | None = None, cache: KVCache | None = None):
        """Offline: x [B, T, C, H, W] -> same shape. Streaming (with `cache`): see `step`."""
        if cache is not None:
            return self.step(x, cache)
        b, t, c, h, w = x.shape
        seq = x.permute(0, 3, 4, 1, 2).reshape(b * h * w, t, c)
        out = self._finish(seq, self.attn(self.norm1(seq), self.causal, window))
        return out.reshape(b, h, w, t, c).permute(0, 3, 4, 1, 2)

    def empty_cache(self, x_shape: torch.Size, window: int, device, dtype) -> KVCache:
        b, c, h, w = x_shape
        heads = self.attn.num_heads
        kv = torch.zeros(b * h * w, heads, window - 1, c // heads, device=device, dtype=dtype)
        return kv, kv.clone(), torch.zeros(window - 1, dtype=torch.bool, device=device)

    def step(self, x: torch.Tensor, cache: KVCache) -> tuple[torch.Tensor, KVCache]:
        """Streaming, causal: one frame x [B, C, H, W] plus the keys/values of up to W-1 earlier frames
        (oldest first, fixed shape, `valid` marks filled slots) -> output frame and the shifted cache."""
        if not self.causal:
            raise RuntimeError("streaming needs temporal blocks in causal mode; this model is bidirectional")
        past_k, past_v, valid = cache
        b, c, h, w = x.shape
        seq = x.permute(0, 2, 3, 1).reshape(b * h * w, 1, c)
        q, k, v = self.attn.split(self.norm1(seq))
        keys, values = torch.cat([past_k, k], dim=2), torch.cat([past_v, v], dim=2)
        slots = past_k.shape[2]
        offsets = torch.arange(slots, -1, -1, device=x.device)  # W-1 ... 1 for the cache, 0 for now
        allowed = torch.cat([valid, torch.ones(1, dtype=torch.bool, device=x.device)])
        mask = self.attn.bias(offsets).masked_fill(~allowed, float("-inf"))[None, :, None, :]
        out = self._finish(seq, self.attn.attend(q, keys, values, mask))
        new_cache = (keys[:, :, 1:], values[:, :, 1:], allowed[1:])
        return out.reshape(b, h, w, c).permute(0, 3, 1, 2), new_cache

    def step_ring(self, x: torch.Tensor, cache: RingCache) -> torch.Tensor:
        """Streaming, causal, eager only: like `step`, but the cache is a ring buffer updated IN PLACE
        (the new key/value overwrite the empty or oldest slot), so a frame does not copy the whole cache.
        Slot ages give the relative offsets, so the result equals `step` and the offline causal forward."""
        keys, values, ages = cache
        b, c, h, w = x.shape
        seq = x.permute(0, 2, 3, 1).reshape(b * h * w, 1, c)
        q, k, v = self.attn.split(self.norm1(seq))  # [N, heads, 1, hd]
        offsets = torch.cat([ages, ages.new_zeros(1)])
        empty = torch.cat([ages == 0, torch.zeros(1, dtype=torch.bool, device=x.device)])
        bias = self.attn.bias(offsets).masked_fill(empty, float("-inf")).to(q.dtype)  # [heads, W]
        scores = torch.cat([q @ keys.transpose(-1, -2), (q * k).sum(-1, keepdim=True)], dim=-1)
        p = (scores * q.shape[-1] ** -0.5 + bias[None, :, None, :]).softmax(-1)
        out = p[..., :-1] @ values + p[..., -1:] * v  # [N, heads, 1, hd]
        y = self._finish(seq, self.attn.proj(out.transpose(1, 2).reshape(b * h * w, 1, c)))
        if ages.numel():
            slot = torch.where(ages == 0, ages.new_tensor(torch.iinfo(ages.dtype).max), ages).argmax().view(1)
            keys.index_copy_(2, slot, k)
            values.index_copy_(2, slot, v)
            ages.add_((ages > 0).to(ages.dtype)).index_fill_(0, slot, 1)
        return y.reshape(b, h, w, c).permute(0, 3, 1, 2)
