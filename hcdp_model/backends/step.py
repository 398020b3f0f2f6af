"""The step graph every backend runs and every exporter compiles.

`ExportStep` is `StreamingStep` with the cache's `valid` flags carried as floats (0/1) in the compute
dtype instead of bools, so that every graph input and output is one floating dtype: TensorRT engines
and ONNX Runtime IO binding then need no bool tensors. The conversion is exact, so the step still
equals the offline causal forward.
"""
from __future__ import annotations

import torch
from torch import nn

from ..model import HCDPModel
from ..streaming import StreamingStep

OUTPUT_NAMES = ("depth", "normal", "mask_logits")


def state_names(count: int) -> list[str]:
    """Names of the 3 cache tensors (keys, values, valid) per temporal block."""
    kinds = ("keys", "values", "valid")
    return [f"block{i // 3}_{kinds[i % 3]}" for i in range(count)]


class ExportStep(nn.Module):
    """forward(frame [B,3,S,S], *state) -> (depth, normal, mask_logits, *new_state); state as in
    `StreamingStep` but every third tensor (valid [W-1]) is float 0/1."""

    def __init__(self, model: HCDPModel, window: int) -> None:
        super().__init__()
        self.step = StreamingStep(model, window)
        self.window = window
        self.resolution = model.cfg.resolution

    def init_state(self, batch: int = 1, device: torch.device | str = "cpu",
                   dtype: torch.dtype = torch.float32) -> tuple[torch.Tensor, ...]:
        return tuple(s.to(dtype) for s in self.step.init_state(batch, device, dtype))

    def forward(self, frame: torch.Tensor, *state: torch.Tensor) -> tuple[torch.Tensor, ...]:
        flags = [s > 0.5 if i % 3 == 2 else s for i, s in enumerate(state)]
        depth, normal, mask_logits, *new = self.step(frame, *flags)
        return (depth, normal, mask_logits,
                *[s.to(frame.dtype) if i % 3 == 2 else s for i, s in enumerate(new)])

    def example_inputs(self, device: torch.device | str = "cpu",
                       dtype: torch.dtype = torch.float32, seed: int = 0) -> tuple[torch.Tensor, ...]:
        """A random frame and a partly filled cache: the shapes/dtypes a compiler needs, with values
        that exercise the attention mask (half the past slots valid)."""
        g = torch.Generator().manual_seed(seed)
        frame = torch.randn(1, 3, self.resolution, self.resolution, generator=g)
        state = []
        for i, s in enumerate(self.init_state(1, "cpu", torch.float32)):
            if i % 3 == 2:
                s = (torch.arange(s.numel()) >= s.numel() // 2).float()
            else:
                s = torch.randn(s.shape, generator=g)
            state.append(s)
        return tuple(t.to(device, dtype) for t in (frame, *state))
