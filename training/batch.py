"""What a task module takes and returns.

Shared by the supervised stages (`stages.py`) and the self-supervised stage 2 (`video.py`): a batch
of named tensors, the task's output tuple, and the clip the model sees.
"""
from __future__ import annotations

from hcdp_model.preprocess import normalize_float
import torch

Batch = dict[str, torch.Tensor]
# (loss, loss terms, prediction, target)
TaskOutput = tuple[torch.Tensor, dict[str, torch.Tensor], dict[str, torch.Tensor],
                   dict[str, torch.Tensor]]


def as_clip(image: torch.Tensor) -> torch.Tensor:
    """Dataset images in [0,1], [B,3,H,W] or [B,T,3,H,W] -> model's normalised clip [B,T,3,H,W]."""
    return normalize_float(image[:, None] if image.dim() == 4 else image)
