"""The PyTorch backend in fp32/fp16/bf16 on CPU or CUDA.

Modes: eager runs `InPlaceStreamingStep` (the temporal caches are ring buffers updated in place: no
per-frame copy of the cache); `compile=True` `torch.compile`s the functional `ExportStep` (graphs
need functional state); `cuda_graph=True` (CUDA only; the default on CUDA) replays the eager
in-place step from a CUDA graph captured on the first frame (`CapturedStep`); both together compile
it with
`torch.compile(mode="reduce-overhead")`, whose CUDA graphs accept the ring updates because the
rings are static addresses. The step itself never touches the host: no `.item()`, no host tensor.
"""
from __future__ import annotations

import logging

import torch
from torch import nn

from .base import (Backend, check_precision, DEFAULT_DEVICE, DEFAULT_PRECISION, DEFAULT_WINDOW,
                   State, StepOutput)
from .cuda_graph import CapturedStep, reset_ring, static_ring
from .step import ExportStep, InPlaceStreamingStep
from ..model import HCDPModel

log = logging.getLogger(__name__)


class _RingOutputs(nn.Module):
    """The in-place step returning only the outputs (the rings are mutated static inputs)."""

    def __init__(self, step: InPlaceStreamingStep) -> None:
        super().__init__()
        self.step = step

    def forward(self, frame: torch.Tensor, *state: torch.Tensor) -> StepOutput:
        depth, normal, mask_logits, *_ = self.step(frame, *state)
        return depth, normal, mask_logits


class TorchBackend(Backend):
    name = "torch"

    def __init__(self, model: HCDPModel, window: int = DEFAULT_WINDOW,
                 device: str | torch.device = DEFAULT_DEVICE,
                 precision: str = DEFAULT_PRECISION,
                 compile: bool = False,  # noqa: A002 (a keyword callers pass: compile=True)
                 cuda_graph: bool | None = None) -> None:
        """Set up the backend; `cuda_graph` chooses whether the step replays a CUDA graph.

        `cuda_graph` None (default): CUDA graphs on a CUDA device unless `compile`, falling back
        to eager with a warning if the capture fails; True: required (CUDA only); False: never.
        """
        self.device = torch.device(device)
        self.input_dtype = check_precision(precision, self.device)
        if cuda_graph and self.device.type != "cuda":
            raise ValueError(f"cuda_graph=True needs a CUDA device, got {self.device}")
        self._fallback = cuda_graph is None
        if cuda_graph is None:
            cuda_graph = self.device.type == "cuda" and not compile
        self.precision = precision
        self.window = window
        self.resolution = model.cfg.resolution
        self.compiled = compile
        self.cuda_graph = cuda_graph
        model = model.to(self.device, self.input_dtype).eval()
        self._captured: CapturedStep | None = None
        self._ring: State | None = None
        if compile and cuda_graph:
            self.module: nn.Module = InPlaceStreamingStep(model, window)
            self._ring = static_ring(self.module, self.device, self.input_dtype)
            self._forward = torch.compile(_RingOutputs(self.module), mode="reduce-overhead",
                                          fullgraph=True)
            self.name = "torch-compile-cudagraphs"
        elif cuda_graph:
            self.module = InPlaceStreamingStep(model, window)
            self._captured = CapturedStep(self.module, self.device, self.input_dtype)
            self.name = "torch-cudagraph"
        elif compile:
            self.module = ExportStep(model, window)
            # fullgraph: a graph break would silently fall back to eager for part of the step.
            self._forward = torch.compile(self.module, fullgraph=True)
            self.name = "torch-compile"
        else:
            self.module = InPlaceStreamingStep(model, window)
            self._forward = self.module

    @torch.inference_mode()
    def init_state(self) -> State:
        if self._captured is not None:
            return self._captured.reset()
        if self._ring is not None:
            reset_ring(self._ring)
            return self._ring
        return self.module.init_state(1, self.device, self.input_dtype)

    @torch.inference_mode()
    def step(self, frame: torch.Tensor, state: State) -> tuple[StepOutput, State]:
        if self._captured is not None:
            try:
                return self._captured(frame, state), state
            except RuntimeError as err:
                if not self._fallback or self._captured.graph is not None:
                    raise
                # a capture that fails, or a first replay that disagrees with eager
                # (CudaGraphMismatch): the step runs eagerly from here on
                log.warning("CUDA graph capture of the streaming step failed or its first replay "
                            "disagreed with eager (%s); running it eagerly",
                            str(err).splitlines()[0][:300])
                self._captured, self._forward = None, self.module
                self.name, self.cuda_graph = "torch", False
                reset_ring(state)  # the failed capture's warm-up wrote into the rings
        if self._ring is not None:
            torch.compiler.cudagraph_mark_step_begin()  # the last outputs were consumed
            return self._forward(frame, *state), state
        depth, normal, mask_logits, *new = self._forward(frame, *state)
        return (depth, normal, mask_logits), tuple(new)
