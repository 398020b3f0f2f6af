"""The learning-rate schedule of appendix A.6.

Linear warm-up from start_factor (1/100) over `warmup_steps` (2000 in the paper), then polynomial
decay with power 1.5 to 0 at the last step.
"""
from __future__ import annotations

import functools

import torch
from torch.optim.lr_scheduler import LambdaLR


def lr_factor(step: int, total_steps: int, warmup_steps: int, start_factor: float = 0.01,
              power: float = 1.5) -> float:
    """Multiplier of the base learning rate before optimizer step `step` (0-based).

    Warm-up (step < warmup_steps): start_factor + (1 - start_factor) * step / warmup_steps, as
    torch's LinearLR. Decay: (1 - (step - warmup_steps) / (total_steps - warmup_steps)) ** power,
    as mmengine's PolyLR with eta_min = 0; it is 1 at the end of the warm-up and 0 at step
    total_steps.
    """
    if step < warmup_steps:
        return start_factor + (1.0 - start_factor) * step / warmup_steps
    progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
    return max(0.0, 1.0 - progress) ** power


def build_scheduler(optimizer: torch.optim.Optimizer, total_steps: int, warmup_steps: int,
                    start_factor: float = 0.01, power: float = 1.5) -> LambdaLR:
    """Return a LambdaLR applying `lr_factor` to every parameter group (each keeps its base lr)."""
    factor = functools.partial(lr_factor, total_steps=total_steps, warmup_steps=warmup_steps,
                               start_factor=start_factor, power=power)
    return LambdaLR(optimizer, factor)
