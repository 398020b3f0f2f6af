"""How much a model's temporal blocks use earlier frames (issue 17).

`attention_report` runs a clip through the model offline (causal, window W, exactly the function
the streaming step computes) and, for every temporal block, measures
- `mass_current` / `mass_past`: the attention probability on the current frame vs on earlier ones,
  averaged over positions, heads and the frames that have a past (t >= 1);
- `mass_by_offset`: the same mass per offset t - s = 0, 1, 2, ... (how far back it looks);
- `update`: the size of the block's residual update relative to its input, ||T(x) - x|| / ||x||;
- `past_share`: how much of that update depends on the past,
  ||T_W(x) - T_1(x)|| / ||T_W(x) - x||, T_1 being the same block with window 1.
A block that acts as an extra per-frame layer shows `mass_current` near 1 or `past_share` near 0.
The fused block (`FusedTemporalBlock`, after every per-frame path) is reported last, as block
"fused": it is the identity without a past, so its `past_share` is 1 by construction and its
`update` alone says how much the past moves the fused features.
"""
from __future__ import annotations

from hcdp_model.model import HCDPModel
from hcdp_model.temporal import clip_attention_bias, FusedTemporalBlock, TemporalBlock
import numpy as np
import torch


def attention_probabilities(block: TemporalBlock | FusedTemporalBlock, x: torch.Tensor,
                            window: int) -> torch.Tensor:
    """Causal attention probabilities of `block` over an input x [B, T, C, h, w] with window W.

    Returns [B*h*w, heads, T_query, T_key] (zero where masked). Same q, k, bias and mask as the
    block's forward (the fused block attends over its own `slots(window)` frames at most).
    """
    b, t, c, h, w = x.shape
    seq = x.permute(0, 3, 4, 1, 2).reshape(b * h * w, t, c)
    if isinstance(block, FusedTemporalBlock):
        q, k = block.split(seq)
        span, bias_of = block.slots(window), block.bias
    else:
        q, k, _ = block.attn.split(block.norm1(seq))  # [N, heads, T, hd]
        span, bias_of = window, block.attn.bias
    bias = clip_attention_bias(bias_of, t, x.device, True, span)  # [heads, T, T]
    scores = q @ k.transpose(-1, -2) * q.shape[-1] ** -0.5 + bias[None]
    return scores.softmax(-1)


def temporal_blocks(model: HCDPModel) -> list[TemporalBlock | FusedTemporalBlock]:
    """Return the model's temporal blocks in forward order: the DPT-scale ones, then the fused."""
    fused = [] if model.fused_temporal is None else [model.fused_temporal]
    return [*(model.temporal_blocks or []), *fused]


def block_inputs(model: HCDPModel, clip: torch.Tensor, window: int) -> list[torch.Tensor]:
    """Return the input [B, T, C, h, w] of each temporal block in the offline forward of `clip`.

    In the order of `temporal_blocks(model)`.
    """
    inputs: list[torch.Tensor] = []
    hooks = [block.register_forward_pre_hook(lambda _m, args: inputs.append(args[0]))
             for block in temporal_blocks(model)]
    try:
        model(clip, window=window)
    finally:
        for hook in hooks:
            hook.remove()
    return inputs


@torch.no_grad()
def attention_report(model: HCDPModel, clip: torch.Tensor, window: int) -> list[dict]:
    """Per temporal block (`temporal_blocks(model)`), the statistics of the module docstring.

    For a preprocessed clip [B, T, 3, H, W] with T >= 2. The model must have causal temporal
    blocks.
    """
    if not temporal_blocks(model):
        raise ValueError("the model has no temporal blocks")
    if clip.shape[1] < 2:
        raise ValueError(f"expected a clip of at least 2 frames, got {clip.shape[1]}")
    model.eval()
    report = []
    inputs = block_inputs(model, clip, window)
    for index, (block, x) in enumerate(zip(temporal_blocks(model), inputs)):
        fused = isinstance(block, FusedTemporalBlock)
        p = attention_probabilities(block, x, window)[:, :, 1:]  # frames with a past
        t = p.shape[-1]
        # p[t, t] for t >= 1 (rows shifted)
        diagonal = torch.diagonal(p, offset=1, dim1=-2, dim2=-1)
        span = block.slots(window) if fused else window
        by_offset = [float(torch.diagonal(p, offset=1 - d, dim1=-2, dim2=-1).mean())
                     for d in range(min(span, t))]
        full, alone = block(x, window=window), block(x, window=1)
        update = (full - x).norm()
        report.append({
            "block": "fused" if fused else index, "features": int(x.shape[2]),
            "map": [int(x.shape[3]), int(x.shape[4])],
            "mass_current": float(diagonal.mean()), "mass_past": float(1.0 - diagonal.mean()),
            "mass_by_offset": by_offset,
            "update": float(update / x.norm().clamp_min(1e-12)),
            "past_share": float((full - alone).norm() / update.clamp_min(1e-12)),
            "relative_bias": (block.relative_bias if fused else block.attn.relative_bias)
            .detach().cpu().numpy().round(3).tolist(),
        })
    return report


def report_table(report: list[dict]) -> str:
    """Return a markdown table of `attention_report`'s output."""
    lines = ["| block | map | mass on current | mass on past | mass at offsets 1, 2, 3 | update / "
             "input | past share of the update |", "|---|---|---:|---:|---|---:|---:|"]
    for r in report:
        offsets = ", ".join(f"{m:.3f}" for m in r["mass_by_offset"][1:4])
        lines.append(f"| {r['block']} | {r['map'][0]}×{r['map'][1]}×{r['features']} "
                     f"| {r['mass_current']:.3f} | {r['mass_past']:.3f} | {offsets} "
                     f"| {r['update']:.4f} | {r['past_share']:.3f} |")
    return "\n".join(lines)


def mean_report(reports: list[list[dict]]) -> list[dict]:
    """Average several clips' reports block by block (scalar fields and per-offset masses)."""
    if not reports:
        raise ValueError("expected at least one report")
    out = []
    for blocks in zip(*reports):
        merged = dict(blocks[0])
        for key in ("mass_current", "mass_past", "update", "past_share"):
            merged[key] = float(np.mean([b[key] for b in blocks]))
        width = min(len(b["mass_by_offset"]) for b in blocks)
        merged["mass_by_offset"] = np.mean([b["mass_by_offset"][:width] for b in blocks],
                                           0).tolist()
        out.append(merged)
    return out
