"""The streaming step replayed from a CUDA graph: the whole frame is one graph launch.

The whole frame (encoder, temporal ring update and attention, decoder) is one graph launch, so the
step costs no kernel-launch or host time.

`InPlaceStreamingStep` keeps everything on the device (ring slot and ages are device tensors, no
`.item()`, no host tensor: tests/model/test_device_step.py), so it can be captured as it is. The
graph is captured once per backend (one resolution and window) over static buffers: the input
frame, the rings and the outputs. A frame is then one copy into the static input and one replay;
the outputs are the static output buffers, valid until the next step.
"""
from __future__ import annotations

import torch

from .base import State, StepOutput
from .step import InPlaceStreamingStep

WARMUP_STEPS = 3  # eager runs on a side stream before capture (cuBLAS/cuDNN handles, allocator)
# The first replay is checked against an eager step on the same frame and rings: largest
# |replayed - eager| over the outputs, relative to the eager outputs' largest magnitude
# (at least 1).
REPLAY_TOLERANCE = {torch.float32: 1e-4, torch.float16: 1e-2, torch.bfloat16: 4e-2}


class CudaGraphMismatch(RuntimeError):
    """The captured graph's first replay disagrees with the eager step it was captured from."""


def check_replay(replayed: StepOutput, eager: StepOutput, dtype: torch.dtype) -> float:
    """Return the relative error of a replay against eager; raise CudaGraphMismatch if too large.

    Both are (depth, normal, mask_logits) of one frame. A graph that replays wrong outputs (a
    capture that missed a kernel, a stale buffer) is refused here instead of publishing them.
    """
    # torch's max propagates NaN (Python's max would skip it): a NaN anywhere is refused
    scale = torch.stack([e.float().abs().max() for e in eager]).max().clamp_min(1.0)
    diff = torch.stack([(r.float() - e.float()).abs().max() for r, e in zip(replayed, eager)])
    error = float(diff.max() / scale)
    tolerance = REPLAY_TOLERANCE[dtype]
    if not error <= tolerance:  # NaN fails too
        raise CudaGraphMismatch(
            f"the CUDA graph's first replay differs from the eager step by {error:.3g} (relative "
            f"to the outputs' largest magnitude; tolerance {tolerance:g} in {dtype}): the graph "
            "is not used")
    return error


def reset_ring(state: State) -> None:
    """Empty the ring caches of `InPlaceStreamingStep` in place (keys, values 0; ages -1).

    Their storage is kept: what a captured graph and `torch.compile`'s CUDA graphs need.
    """
    for i, tensor in enumerate(state):
        tensor.fill_(-1 if i % 3 == 2 else 0)


def static_ring(step: InPlaceStreamingStep, device: torch.device, dtype: torch.dtype) -> State:
    """Allocate the rings of `step` once and mark them as static addresses for `torch.compile`.

    Its CUDA graphs then accept the in-place updates (mutations of static inputs are allowed).
    """
    state = step.init_state(1, device, dtype)
    for tensor in state:
        torch._dynamo.mark_static_address(tensor)
    return state


class CapturedStep:
    """`InPlaceStreamingStep` captured in a CUDA graph on first use, replayed per frame."""

    def __init__(self, step: InPlaceStreamingStep, device: torch.device,
                 dtype: torch.dtype) -> None:
        if device.type != "cuda":
            raise ValueError(f"expected a CUDA device for CUDA graphs, got {device}")
        self.step = step
        self.device = device
        resolution = step.model.cfg.resolution
        with torch.inference_mode():
            self.frame = torch.zeros(1, 3, resolution, resolution, device=device, dtype=dtype)
            self.state = step.init_state(1, device, dtype)
        self.dtype = dtype
        self.graph: torch.cuda.CUDAGraph | None = None
        self.outputs: StepOutput | None = None
        self.replay_error: float | None = None  # the first replay vs eager (check_replay)

    def reset(self) -> State:
        with torch.inference_mode():
            reset_ring(self.state)
        return self.state

    def capture(self) -> None:
        with torch.inference_mode():
            side = torch.cuda.Stream(self.device)
            side.wait_stream(torch.cuda.current_stream(self.device))
            with torch.cuda.stream(side):
                for _ in range(WARMUP_STEPS):
                    self.step(self.frame, *self.state)
            torch.cuda.current_stream(self.device).wait_stream(side)
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph):
                depth, normal, mask_logits, *_ = self.step(self.frame, *self.state)
            reset_ring(self.state)  # capture runs nothing; the warm-up wrote into the rings
        self.graph, self.outputs = graph, (depth, normal, mask_logits)

    def __call__(self, frame: torch.Tensor, state: State) -> StepOutput:
        if state is not self.state:
            raise ValueError("expected the state returned by this backend's init_state/step (a "
                             "captured graph reads its own static buffers), got another tuple")
        if self.graph is None:
            return self._first(frame)
        self.frame.copy_(frame, non_blocking=True)
        self.graph.replay()
        return self.outputs

    def _first(self, frame: torch.Tensor) -> StepOutput:
        """Capture, replay the first frame, and check the replay against an eager step.

        The eager step runs on copies of the rings as they were before the frame, so both see the
        same input; on a mismatch the graph is dropped and the rings are emptied.
        """
        self.capture()
        with torch.inference_mode():
            before = tuple(t.clone() for t in self.state)
            self.frame.copy_(frame)
            self.graph.replay()
            eager = self.step(self.frame, *before)[:3]
            try:
                self.replay_error = check_replay(self.outputs, eager, self.dtype)
            except CudaGraphMismatch:
                self.graph, self.outputs = None, None
                reset_ring(self.state)
                raise
        return self.outputs
