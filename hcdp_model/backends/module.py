"""A backend over a loaded torch program (a torch.export .pt2 or a Torch-TensorRT program).

The same step graph, with shapes and dtypes taken from the artefact's manifest.
"""
from __future__ import annotations

from typing import Callable

import torch

from .base import Backend, State, StepOutput
from .manifest import Manifest


class ModuleBackend(Backend):
    def __init__(self, name: str, module: Callable[..., tuple[torch.Tensor, ...]],
                 manifest: Manifest,
                 device: str | torch.device) -> None:
        self.name = name
        self.module = module
        self.manifest = manifest
        self.device = torch.device(device)
        self.precision = manifest.precision
        self.window = manifest.window
        self.resolution = manifest.model_resolution
        self.input_dtype = getattr(torch, manifest.io_dtype)
        self._state_shapes = list(manifest.inputs.values())[1:]

    def init_state(self) -> State:
        return tuple(torch.zeros(s, dtype=self.input_dtype, device=self.device)
                     for s in self._state_shapes)

    @torch.inference_mode()
    def step(self, frame: torch.Tensor, state: State) -> tuple[StepOutput, State]:
        depth, normal, mask_logits, *new = self.module(frame.to(self.device, self.input_dtype),
                                                       *state)
        return (depth, normal, mask_logits), tuple(new)
