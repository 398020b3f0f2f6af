"""Temporal blocks T (paper §3.2, in the style of AnimateDiff / Video Depth Anything).

Each block attends along time at every spatial position of one DPT scale:
    a = x + Attn(LN(x));  a = a + MLP(LN(a));  out = x + proj_out(a)
`proj_out` is zero-initialised, so a freshly inserted block is the identity and stage-2 training
starts from the stage-1 predictions. Time positions enter only as a learned bias per head and
*relative* offset t - s (no absolute encoding), which makes a sliding-window key/value cache exact:
the streaming `step` over a cache of the last W-1 frames equals the offline causal forward with
window W.
"""
from __future__ import annotations

import torch
from torch import nn
import torch.nn.functional as F

from .config import TemporalConfig

# keys, values [W-1, B, C, h*w]; valid [W-1]
KVCache = tuple[torch.Tensor, torch.Tensor, torch.Tensor]
# keys, values [W, B, C, h*w] in ring order; ages [W] long: frames since each slot was written, -1
# = empty
RingCache = tuple[torch.Tensor, torch.Tensor, torch.Tensor]


def _slot_loop(asked: bool | None, x: torch.Tensor) -> bool:
    """Attend slot by slot on large maps (h*w >= 1024).

    On those, the all-slots temporary would leave the cache.
    """
    return x.shape[2] * x.shape[3] >= 1024 if asked is None else asked


def _softmax_fp32(scores: torch.Tensor) -> torch.Tensor:
    """Softmax over the slots (dim 0) computed in fp32 whatever the compute dtype.

    fp16 engines (TensorRT 10.3 on Jetson) then keep the exp/sum exact; a no-op cast in fp32.
    """
    return scores.float().softmax(0).to(scores.dtype)


def attend_slots(q: torch.Tensor, keys: torch.Tensor, values: torch.Tensor, bias: torch.Tensor,
                 heads: int, slot_loop: bool) -> torch.Tensor:
    """Attend one frame's queries over cached slots.

    q [B, C, N] against keys/values [S, B, C, N] with bias [S, heads] (-inf = masked) -> [B, C, N].
    `slot_loop` goes slot by slot so that no temporary as large as the cache is written (faster on
    large maps; a graph gets the loop unrolled).
    """
    b, c, n = q.shape
    hd = c // heads
    q = q.unflatten(1, (heads, hd))  # [B, heads, hd, N]
    # [S, B, heads, hd, N]
    keys, values = keys.unflatten(2, (heads, hd)), values.unflatten(2, (heads, hd))
    bias = bias[:, None, :, None]
    if slot_loop:
        scores = torch.stack([(k * q).sum(2) for k in keys])  # [S, B, heads, N]
        p = _softmax_fp32(scores * hd ** -0.5 + bias)
        out = values[0] * p[0, :, :, None]
        for v, weight in zip(values[1:], p[1:]):
            out = torch.addcmul(out, v, weight[:, :, None])
    else:
        p = _softmax_fp32((keys * q).sum(3) * hd ** -0.5 + bias)  # [S, B, heads, N]
        out = (values * p[:, :, :, None]).sum(0)
    return out.flatten(1, 2)


def write_ring(keys: torch.Tensor, values: torch.Tensor, ages: torch.Tensor, key: torch.Tensor,
               value: torch.Tensor) -> None:
    """Write one frame's key/value [1, B, C, N] into a ring in place.

    It goes into an empty slot, else the oldest. All on the device (a scalar fill, no host tensor,
    no sync), so the step can be captured in a CUDA graph; ages count the frames since each slot
    was written (-1 = empty).
    """
    slot = ages.masked_fill(ages < 0, torch.iinfo(ages.dtype).max).argmax().view(1)
    keys.index_copy_(0, slot, key)
    values.index_copy_(0, slot, value)
    ages.add_((ages >= 0).to(ages.dtype)).index_fill_(0, slot, 0)


def append_frame(cache: KVCache, key: torch.Tensor, value: torch.Tensor,
                 time_bias) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Append one frame's key/value [1, B, C, N] to a functional cache.

    Returns keys and values [W, B, C, N] (oldest first, the frame last), which slots hold a frame
    ([W] bool) and the attention bias [W, heads] from `time_bias(offsets)` (-inf on empty slots).
    """
    past_k, _, valid = cache
    keys, values = torch.cat([past_k, key]), torch.cat([cache[1], value])
    offsets = torch.arange(past_k.shape[0], -1, -1, device=key.device)  # W-1 ... 1, 0 for now
    allowed = torch.cat([valid, torch.ones(1, dtype=torch.bool, device=key.device)])
    bias = time_bias(offsets).masked_fill(~allowed, float("-inf")).to(key.dtype).t()
    return keys, values, allowed, bias


def relative_time_bias(table: torch.Tensor, offsets: torch.Tensor) -> torch.Tensor:
    """Look up a [heads, 2R+1] bias table at integer offsets clipped to [-R, R] -> [heads, ...]."""
    max_rel = (table.shape[1] - 1) // 2
    return table[:, offsets.clamp(-max_rel, max_rel) + max_rel]


def clip_attention_bias(time_bias, t: int, device, causal: bool,
                        span: int | None) -> torch.Tensor:
    """Bias of offline attention over a T-frame clip: [heads, T_query, T_key], -inf where masked.

    `time_bias(offsets)` gives the relative bias. Causal: a frame sees itself and earlier frames;
    with `span` only offsets below it (bidirectional: |offset| < span).
    """
    pos = torch.arange(t, device=device)
    offsets = pos[:, None] - pos[None, :]  # [T_query, T_key]
    allowed = offsets >= 0 if causal else torch.ones_like(offsets, dtype=torch.bool)
    if span is not None:
        allowed = allowed & (offsets < span) & (offsets > -span)
    return time_bias(offsets).masked_fill(~allowed, float("-inf"))


class TemporalAttention(nn.Module):

    def __init__(self, dim: int, num_heads: int, max_relative_distance: int) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.max_rel = max_relative_distance
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        # bias[h, d + max_rel] for relative offset d = t_query - t_key, clipped to [-max_rel,
        # max_rel]
        self.relative_bias = nn.Parameter(torch.zeros(num_heads, 2 * max_relative_distance + 1))

    def bias(self, offsets: torch.Tensor) -> torch.Tensor:
        """Bias for an integer tensor of offsets: [...] -> [heads, ...]."""
        return relative_time_bias(self.relative_bias, offsets)

    def split(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        n, t, c = x.shape
        q, k, v = self.qkv(x).reshape(n, t, 3, self.num_heads,
                                      c // self.num_heads).permute(2, 0, 3, 1, 4)
        return q, k, v  # each [N, heads, T, hd]

    def attend(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
               mask: torch.Tensor) -> torch.Tensor:
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask.to(q.dtype))
        n, h, t, hd = out.shape
        return self.proj(out.transpose(1, 2).reshape(n, t, h * hd))

    def forward(self, x: torch.Tensor, causal: bool, window: int | None) -> torch.Tensor:
        """Attend along time: x [N, T, C] -> [N, T, C].

        Causal with `window` W lets frame t see frames t-W+1 .. t.
        """
        mask = clip_attention_bias(self.bias, x.shape[1], x.device, causal,
                                   window if causal else None)
        return self.attend(*self.split(x), mask[None])  # mask [1, heads, T, T]


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

    # -- streaming: caches keep time outermost and positions last, [slots, B, C, h*w] -------------
    # Adding a frame is then one contiguous copy (in a graph, the roll of the cache too), q/k/v
    # come out of the qkv product already in that layout, and attention is a few vectorised passes
    # over long rows instead of B*h*w*heads tiny matrix products.

    def empty_cache(self, x_shape: torch.Size, window: int, device, dtype) -> KVCache:
        b, c, h, w = x_shape
        kv = torch.zeros(window - 1, b, c, h * w, device=device, dtype=dtype)
        return kv, kv.clone(), torch.zeros(window - 1, dtype=torch.bool, device=device)

    def empty_ring(self, x_shape: torch.Size, window: int, device, dtype) -> RingCache:
        b, c, h, w = x_shape
        kv = torch.zeros(window, b, c, h * w, device=device, dtype=dtype)
        return kv, kv.clone(), torch.full((window,), -1, dtype=torch.long, device=device)

    def _frame_qkv(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Return x [B, C, h, w] as a sequence [B*h*w, 1, C] and its q, k, v as [B, 3C, h*w]."""
        b, c, h, w = x.shape
        seq = x.permute(0, 2, 3, 1).reshape(b * h * w, 1, c)
        normed = self.norm1(seq).view(b, h * w, c).transpose(1, 2)  # [B, C, N] view, no copy
        qkv = self.attn.qkv
        return seq, torch.baddbmm(qkv.bias[None, :, None].expand(b, -1, h * w),
                                  qkv.weight.expand(b, -1, -1),
                                  normed)

    def _frame_out(self, seq: torch.Tensor, out: torch.Tensor, shape: torch.Size) -> torch.Tensor:
        """Attention output [B, C, N] -> projection, MLP and proj_out -> the block's output.

        The output is [B, C, h, w].
        """
        b, c, h, w = shape
        proj = self.attn.proj  # [B, C, N] -> [B, N, C] through the transposed product
        attended = torch.baddbmm(proj.bias.expand(b, h * w, -1), out.transpose(1, 2),
                                 proj.weight.t().expand(b, -1, -1))
        y = self._finish(seq, attended.view(b * h * w, 1, c))
        return y.reshape(b, h, w, c).permute(0, 3, 1, 2)

    def step(self, x: torch.Tensor, cache: KVCache,
             slot_loop: bool | None = None) -> tuple[torch.Tensor, KVCache]:
        """Streaming, causal, functional (what export compiles).

        One frame x [B, C, h, w] plus the keys/values of up to W-1 earlier frames ([W-1, B, C, h*w]
        oldest first, fixed shape, `valid` marks filled slots) -> output frame and the rolled
        cache. `slot_loop`: see `attend_slots` (default on maps of h*w >= 1024 positions).
        """
        if not self.causal:
            raise RuntimeError("streaming needs temporal blocks in causal mode; this model is "
                               "bidirectional")
        c = x.shape[1]
        seq, qkv = self._frame_qkv(x)
        keys, values, allowed, bias = append_frame(cache, qkv[None, :, c:2 * c],
                                                   qkv[None, :, 2 * c:], self.attn.bias)
        out = attend_slots(qkv[:, :c], keys, values, bias, self.attn.num_heads,
                           _slot_loop(slot_loop, x))
        return self._frame_out(seq, out, x.shape), (keys[1:], values[1:], allowed[1:])

    def step_ring(self, x: torch.Tensor, cache: RingCache,
                  slot_loop: bool | None = None) -> torch.Tensor:
        """Streaming, causal, eager only: like `step`, but the cache is a ring updated IN PLACE.

        The ring has W slots (the new key/value overwrite an empty or the oldest slot, then the
        query attends over the ring), so a frame copies no cache. Slot ages (-1 = empty) give the
        relative offsets, so the result equals `step` and the offline causal forward. `slot_loop`:
        as in `step`.
        """
        keys, values, ages = cache
        c = x.shape[1]
        seq, qkv = self._frame_qkv(x)
        write_ring(keys, values, ages, qkv[None, :, c:2 * c], qkv[None, :, 2 * c:])
        # [W, heads]
        bias = self.attn.bias(ages).masked_fill(ages < 0, float("-inf")).to(x.dtype).t()
        out = attend_slots(qkv[:, :c], keys, values, bias, self.attn.num_heads,
                           _slot_loop(slot_loop, x))
        return self._frame_out(seq, out, x.shape)


# q = k = QK_INIT * LN(x) at initialisation: the attention of a fresh fused block is content-based
# from the first step (earlier frames whose features at a position resemble the current frame's
# weigh more), instead of uniform; a uniform average over a moving person blurs it.
QK_INIT = 1.7


class FusedTemporalBlock(nn.Module):
    """A temporal block on the fused features, after every per-frame path (issue 17).

    The four DPT-scale blocks cannot steady what enters after them: the human prior (added to
    F_DPT) and the CNN branch see each frame on its own, and on inputs with per-frame nuisances
    they carry most of the flicker (docs/training.md, "Does stage 2 use the past?"). This block
    attends along time at every pixel of the fused map, just before CWA and the heads, and its
    update comes only from earlier frames:

        p = softmax_s(q_t . k_s / sqrt(d) + b(t - s)),   s in the last `fused_window` frames
        out_t = x_t + P (sum_s p_s x_s - x_t)

    with q, k linear in LN(x) and the values the features themselves. Without earlier frames the
    sum is x_t and the block is exactly the identity, so "same weights, window 1" is the model
    without it, and the block cannot lower the loss by smoothing each frame on its own: only by
    borrowing from the past. P is linear without a bias and zero-initialised (a fresh block changes
    nothing). Streaming uses the same cache layouts as `TemporalBlock` ([slots, B, C, h*w]), with
    `fused_window` slots at most.
    """

    def __init__(self, dim: int, cfg: TemporalConfig) -> None:
        super().__init__()
        self.causal = cfg.mode == "causal"
        self.num_heads = cfg.num_heads
        self.max_rel = cfg.max_relative_distance
        self.window = cfg.fused_window
        self.norm = nn.LayerNorm(dim)
        self.qk = nn.Linear(dim, 2 * dim)
        with torch.no_grad():
            self.qk.weight.copy_(torch.cat([torch.eye(dim), torch.eye(dim)]) * QK_INIT)
            self.qk.bias.zero_()
        self.relative_bias = nn.Parameter(torch.zeros(cfg.num_heads, 2 * self.max_rel + 1))
        # No bias: P(0) must be 0, or the block would shift every frame by a constant even without
        # a past (a per-frame layer again).
        self.proj_out = nn.Linear(dim, dim, bias=False)
        nn.init.zeros_(self.proj_out.weight)

    def bias(self, offsets: torch.Tensor) -> torch.Tensor:
        """Bias for an integer tensor of offsets: [...] -> [heads, ...]."""
        return relative_time_bias(self.relative_bias, offsets)

    def slots(self, window: int) -> int:
        """Frames the block attends over (current included) within a streaming window."""
        return min(window, self.window)

    def split(self, seq: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Sequences [N, T, C] -> queries and keys [N, heads, T, C / heads]."""
        n, t, c = seq.shape
        qk = self.qk(self.norm(seq)).reshape(n, t, 2, self.num_heads, c // self.num_heads)
        q, k = qk.permute(2, 0, 3, 1, 4)
        return q, k

    def forward(self, x: torch.Tensor, window: int | None = None,
                cache: KVCache | None = None):
        """Offline: x [B, T, C, H, W] -> same shape. Streaming (with `cache`): see `step`."""
        if cache is not None:
            return self.step(x, cache)
        b, t, c, h, w = x.shape
        span = self.window if window is None else self.slots(window)
        seq = x.permute(0, 3, 4, 1, 2).reshape(b * h * w, t, c)
        q, k = self.split(seq)
        v = seq.reshape(-1, t, self.num_heads, c // self.num_heads).transpose(1, 2)
        mask = clip_attention_bias(self.bias, t, x.device, self.causal, span)[None]
        past = F.scaled_dot_product_attention(q, k, v, attn_mask=mask.to(q.dtype))
        past = past.transpose(1, 2).reshape(-1, t, c)
        out = seq + self.proj_out(past - seq)
        return out.reshape(b, h, w, t, c).permute(0, 3, 4, 1, 2)

    # -- streaming --------------------------------------------------------------------------------
    def empty_cache(self, x_shape: torch.Size, window: int, device, dtype) -> KVCache:
        b, c, h, w = x_shape
        kv = torch.zeros(self.slots(window) - 1, b, c, h * w, device=device, dtype=dtype)
        return kv, kv.clone(), torch.zeros(kv.shape[0], dtype=torch.bool, device=device)

    def empty_ring(self, x_shape: torch.Size, window: int, device, dtype) -> RingCache:
        b, c, h, w = x_shape
        kv = torch.zeros(self.slots(window), b, c, h * w, device=device, dtype=dtype)
        return kv, kv.clone(), torch.full((kv.shape[0],), -1, dtype=torch.long, device=device)

    def _frame_qk(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Return x [B, C, h, w] as [B, C, h*w] (a view) and its q, k as [B, 2C, h*w]."""
        b, c, h, w = x.shape
        flat = x.reshape(b, c, h * w)
        normed = self.norm(x.permute(0, 2, 3, 1).reshape(b, h * w, c)).transpose(1, 2)
        qk = torch.baddbmm(self.qk.bias[None, :, None].expand(b, -1, h * w),
                           self.qk.weight.expand(b, -1, -1), normed)
        return flat, qk

    def _frame_out(self, flat: torch.Tensor, past: torch.Tensor,
                   shape: torch.Size) -> torch.Tensor:
        """Return x + P(past - x) for one frame: [B, C, h*w] -> [B, C, h, w]."""
        return torch.baddbmm(flat, self.proj_out.weight.expand(flat.shape[0], -1, -1),
                             past - flat).view(shape)

    def step(self, x: torch.Tensor, cache: KVCache,
             slot_loop: bool | None = None) -> tuple[torch.Tensor, KVCache]:
        """Streaming, functional: as `TemporalBlock.step`.

        Keys and the frames' features are cached.
        """
        if not self.causal:
            raise RuntimeError("streaming needs temporal blocks in causal mode; this model is "
                               "bidirectional")
        if cache[0].shape[0] == 0:  # no slot for the past (W = 1): exactly the identity
            return x, cache
        c = x.shape[1]
        flat, qk = self._frame_qk(x)
        keys, values, allowed, bias = append_frame(cache, qk[None, :, c:], flat[None], self.bias)
        past = attend_slots(qk[:, :c], keys, values, bias, self.num_heads,
                            _slot_loop(slot_loop, x))
        return self._frame_out(flat, past, x.shape), (keys[1:], values[1:], allowed[1:])

    def step_ring(self, x: torch.Tensor, cache: RingCache,
                  slot_loop: bool | None = None) -> torch.Tensor:
        """Streaming, in place: as `TemporalBlock.step_ring`."""
        keys, values, ages = cache
        if keys.shape[0] == 1:  # a ring of one slot holds only the current frame: the identity
            return x
        c = x.shape[1]
        flat, qk = self._frame_qk(x)
        write_ring(keys, values, ages, qk[None, :, c:], flat[None])
        bias = self.bias(ages).masked_fill(ages < 0, float("-inf")).to(x.dtype).t()
        past = attend_slots(qk[:, :c], keys, values, bias, self.num_heads,
                            _slot_loop(slot_loop, x))
        return self._frame_out(flat, past, x.shape)
