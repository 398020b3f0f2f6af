"""The interface every runtime backend implements: a fixed-shape streaming cache and one step."""
from __future__ import annotations

from abc import ABC, abstractmethod

import torch

BACKENDS = ("torch", "onnxruntime", "tensorrt")
PRECISIONS = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
# The run-time defaults of every entry point that runs a model (load_predictor, the node, hcdp bag,
# hcdp eval, hcdp export, the benchmarks): the paper's streaming window W = 16 frames, eager
# PyTorch in fp32 on the CPU. Defined here once; the others read these names.
DEFAULT_WINDOW = 16
DEFAULT_BACKEND = "torch"
DEFAULT_PRECISION = "fp32"
DEFAULT_DEVICE = "cpu"

State = tuple[torch.Tensor, ...]
# depth [1,1,S,S], normal [1,3,S,S], mask logits
StepOutput = tuple[torch.Tensor, torch.Tensor, torch.Tensor]


class BackendError(RuntimeError):
    """A backend cannot be built or loaded: missing runtime, corrupt or mismatched artefact."""


def check_precision(precision: str, device: torch.device) -> torch.dtype:
    if precision not in PRECISIONS:
        raise ValueError(f"expected precision {'/'.join(PRECISIONS)}, got {precision!r}")
    if precision == "fp16" and device.type == "cpu":
        raise ValueError("precision fp16 needs a CUDA device; use fp32 or bf16 on the CPU")
    return PRECISIONS[precision]


class Backend(ABC):
    """One compiled or eager streaming step at a fixed model resolution and window.

    `frame` is the preprocessed [1,3,S,S] tensor on `device` in `input_dtype`; the state is the
    backend's own fixed-shape cache (opaque to callers: pass back what `step` returned). Outputs
    are tensors on `device` (any float dtype; the predictor casts).

    `startup_check` is the parity check an exported artefact passed when it was opened on this
    machine ({"max_error": float, "tolerance": float, "frames": int}); None for eager PyTorch.
    """

    name: str
    resolution: int
    window: int
    precision: str
    device: torch.device
    input_dtype: torch.dtype
    startup_check: dict[str, float | int] | None = None

    @abstractmethod
    def init_state(self) -> State:
        """Return the empty cache (no valid past frames)."""

    @abstractmethod
    def step(self, frame: torch.Tensor, state: State) -> tuple[StepOutput, State]:
        """Run one frame through encoder, temporal attention over the cache and decoder.

        Returns the outputs and the new cache.
        """

    def describe(self) -> str:
        return (f"{self.name} {self.precision} on {self.device} (S={self.resolution}, "
                f"window={self.window})")
