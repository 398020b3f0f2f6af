"""The step graphs every backend runs and every exporter compiles.

`StreamingStep` is the pure step function with the cache as explicit fixed-shape tensors: one
static graph per resolution and window. `InPlaceStreamingStep` is the same maths over ring buffers
updated in place (what the eager torch backend runs). `ExportStep` is `StreamingStep` with the
cache's `valid` flags carried as floats (0/1) in the compute dtype instead of bools, so that every
graph input and output is one floating dtype: TensorRT engines and ONNX Runtime IO binding then
need no bool tensors. The conversion is exact, so every step still equals the offline causal
forward.
"""
from __future__ import annotations

import torch
from torch import nn

from ..model import HCDPModel

OUTPUT_NAMES = ("depth", "normal", "mask_logits")


class StreamingStep(nn.Module):
    """forward(frame [B,3,S,S], *state) -> (depth, normal, mask_logits, *new_state).

    state = (keys, values, valid) for each of the 4 temporal blocks, then for the fused temporal
    block if the model has one; keys/values [W-1, B, C, h*w] oldest first (the fused block keeps
    min(W, fused_window) - 1 slots), valid bool. Without temporal blocks the state is empty.
    """

    def __init__(self, model: HCDPModel, window: int) -> None:
        super().__init__()
        if window < 1:
            raise ValueError(f"expected a window >= 1, got {window}")
        if model.temporal_blocks is not None and not model.temporal_blocks[0].causal:
            raise ValueError("streaming needs a causal model; call "
                             "model.set_temporal_mode('causal') (a bidirectional model needs "
                             "future frames)")
        self.model = model
        self.window = window

    def init_state(self, batch: int = 1, device: torch.device | str = "cpu",
                   dtype: torch.dtype = torch.float32) -> tuple[torch.Tensor, ...]:
        if self.model.temporal_blocks is None:
            return ()
        c = self.model.cfg.decoder.features
        state: list[torch.Tensor] = []
        for block, side in zip(self.model.temporal_blocks, self.model.scale_sizes()):
            shape = torch.Size((batch, c, side, side))
            state.extend(self._empty_cache(block, shape, device, dtype))
        if self.model.fused_temporal is not None:  # the fused features, at the model resolution
            s = self.model.cfg.resolution
            shape = torch.Size((batch, self.model.cfg.fusion.channels, s, s))
            state.extend(self._empty_cache(self.model.fused_temporal, shape, device, dtype))
        return tuple(state)

    def _empty_cache(self, block, shape: torch.Size, device, dtype) -> tuple[torch.Tensor, ...]:
        return block.empty_cache(shape, self.window, device, dtype)

    def forward(self, frame: torch.Tensor, *state: torch.Tensor) -> tuple[torch.Tensor, ...]:
        scales = self.model.encode(frame)
        new_state: list[torch.Tensor] = []
        if self.model.temporal_blocks is not None:
            for i, block in enumerate(self.model.temporal_blocks):
                scales[i], cache = block(scales[i], cache=tuple(state[3 * i:3 * i + 3]))
                new_state.extend(cache)
        fused, side = self.model.fuse(frame, scales)
        if self.model.fused_temporal is not None:
            first = 3 * len(self.model.temporal_blocks)  # after the DPT-scale blocks' caches
            fused, cache = self.model.fused_temporal(fused, cache=tuple(state[first:first + 3]))
            new_state.extend(cache)
        out = self.model.predict(fused, side)
        return (out["depth"], out["normal"], out["mask_logits"], *new_state)


class InPlaceStreamingStep(StreamingStep):
    """The eager step the torch backend runs.

    Same outputs as `StreamingStep`, but each temporal cache is a ring buffer updated in place
    (state = keys, values, ages per block; `forward` returns the same, mutated tensors), so a frame
    costs no copy of the whole cache. Not for export: graphs need the functional `StreamingStep`.
    """

    def _empty_cache(self, block, shape: torch.Size, device, dtype) -> tuple[torch.Tensor, ...]:
        return block.empty_ring(shape, self.window, device, dtype)

    def forward(self, frame: torch.Tensor, *state: torch.Tensor) -> tuple[torch.Tensor, ...]:
        scales = self.model.encode(frame)
        for i, block in enumerate(self.model.temporal_blocks or []):
            scales[i] = block.step_ring(scales[i], tuple(state[3 * i:3 * i + 3]))
        fused, side = self.model.fuse(frame, scales)
        if self.model.fused_temporal is not None:
            first = 3 * len(self.model.temporal_blocks)
            fused = self.model.fused_temporal.step_ring(fused, tuple(state[first:first + 3]))
        out = self.model.predict(fused, side)
        return (out["depth"], out["normal"], out["mask_logits"], *state)


def state_names(count: int) -> list[str]:
    """Names of the 3 cache tensors (keys, values, valid) per temporal block."""
    kinds = ("keys", "values", "valid")
    return [f"block{i // 3}_{kinds[i % 3]}" for i in range(count)]


class ExportStep(nn.Module):
    """forward(frame [B,3,S,S], *state) -> (depth, normal, mask_logits, *new_state).

    State as in `StreamingStep` but every third tensor (valid [W-1]) is float 0/1.
    """

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

    def example_inputs(self, device: torch.device | str | None = None,
                       dtype: torch.dtype = torch.float32,
                       seed: int = 0) -> tuple[torch.Tensor, ...]:
        """Make a random frame and a partly filled cache.

        The shapes/dtypes a compiler needs, with values that exercise the attention mask (half
        the past slots valid). On `device`, by default the device of the model's weights (so that
        running the step on them works on a GPU too).
        """
        if device is None:
            device = next(self.parameters()).device
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
