"""The PyTorch backend in fp32/fp16/bf16 on CPU or CUDA: eager runs `InPlaceStreamingStep` (the temporal
caches are ring buffers updated in place: no per-frame copy of the cache); with `compile=True` the
functional `ExportStep` is `torch.compile`d (graphs need functional state)."""
from __future__ import annotations

import torch

from ..model import HCDPModel
from .base import Backend, State, StepOutput, check_precision
from .step import ExportStep, InPlaceStreamingStep


class TorchBackend(Backend):
    name = "torch"

    def __init__(self, model: HCDPModel, window: int = 16, device: str | torch.device = "cpu",
                 precision: str = "fp32", compile: bool = False) -> None:
        self.device = torch.device(device)
        self.input_dtype = check_precision(precision, self.device)
        self.precision = precision
        self.window = window
        self.resolution = model.cfg.resolution
        model = model.to(self.device, self.input_dtype).eval()
        self.module = ExportStep(model, window) if compile else InPlaceStreamingStep(model, window)
        # fullgraph: a graph break would silently fall back to eager for part of the step.
        self._forward = torch.compile(self.module, fullgraph=True) if compile else self.module
        self.compiled = compile
        if compile:
            self.name = "torch-compile"

    def init_state(self) -> State:
        return self.module.init_state(1, self.device, self.input_dtype)

    @torch.inference_mode()
    def step(self, frame: torch.Tensor, state: State) -> tuple[StepOutput, State]:
        depth, normal, mask_logits, *new = self._forward(frame, *state)
        return (depth, normal, mask_logits), tuple(new)
