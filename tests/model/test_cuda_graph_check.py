"""The first replay of a captured CUDA graph is checked against an eager step (issue 19.3).

A graph that replays wrong outputs must never be used silently: `CapturedStep` compares its first
replay with the eager step on the same frame and rings, drops the graph on a mismatch, and the
default torch backend falls back to eager with a warning. The capture itself needs CUDA, so these
tests stand a fake graph in for it (its replay runs the eager step, or forgets to); the real
capture is tested in tests/model/test_device_step.py where a GPU exists.
"""
from __future__ import annotations

import copy

from hcdp_model.backends.cuda_graph import (CapturedStep, check_replay, CudaGraphMismatch,
                                            reset_ring)
from hcdp_model.backends.step import InPlaceStreamingStep
from hcdp_model.backends.torch_eager import TorchBackend
from hcdp_model.model import HCDPModel
import pytest
from tests.model.helpers import activate_temporal, assert_backends_agree, micro_config, random_clip
import torch


def _outputs(scale: float = 1.0) -> tuple[torch.Tensor, ...]:
    return (torch.full((1, 1, 4, 4), 2.0 * scale), torch.full((1, 3, 4, 4), -0.5 * scale),
            torch.full((1, 1, 4, 4), 3.0 * scale))


def test_check_replay_measures_the_error_relative_to_the_largest_output():
    eager = _outputs()
    replayed = tuple(t.clone() for t in eager)
    assert check_replay(replayed, eager, torch.float32) == 0.0
    replayed[1][0, 0, 0, 0] += 3e-5 * 3.0  # 3e-5 of the largest magnitude (3.0)
    assert check_replay(replayed, eager, torch.float32) == pytest.approx(3e-5, rel=1e-3)


@pytest.mark.parametrize("dtype,error", [(torch.float32, 2e-4), (torch.float16, 2e-2),
                                         (torch.bfloat16, 8e-2)])
def test_check_replay_refuses_errors_over_the_precisions_tolerance(dtype, error):
    eager = _outputs()
    replayed = tuple(t.clone() for t in eager)
    replayed[2][0, 0, 1, 1] += error * 3.0
    with pytest.raises(CudaGraphMismatch, match="first replay differs from the eager step"):
        check_replay(replayed, eager, dtype)
    replayed[2][0, 0, 1, 1] = float("nan")
    with pytest.raises(CudaGraphMismatch, match="nan"):
        check_replay(replayed, eager, dtype)


class _FakeGraph:
    """Stand in for torch.cuda.CUDAGraph.

    Its replay runs the eager step into the static outputs (a good capture) or leaves them as they
    were (a capture that missed its kernels).
    """

    def __init__(self, captured: CapturedStep, works: bool) -> None:
        self.captured, self.works = captured, works

    def replay(self) -> None:
        if self.works:
            c = self.captured
            for static, fresh in zip(c.outputs, c.step(c.frame, *c.state)[:3]):
                static.copy_(fresh)


def _captured_on_cpu(model: HCDPModel, window: int, works: bool) -> CapturedStep:
    step = InPlaceStreamingStep(model, window)
    captured = object.__new__(CapturedStep)  # __init__ refuses a CPU device; the check does not
    captured.step, captured.device, captured.dtype = step, torch.device("cpu"), torch.float32
    s = model.cfg.resolution
    captured.frame = torch.zeros(1, 3, s, s)
    captured.state = step.init_state(1, captured.device, torch.float32)
    captured.graph, captured.outputs, captured.replay_error = None, None, None

    def capture() -> None:
        shapes = step(captured.frame, *(t.clone() for t in captured.state))[:3]
        captured.outputs = tuple(torch.zeros_like(t) for t in shapes)
        captured.graph = _FakeGraph(captured, works)

    captured.capture = capture
    return captured


def test_a_good_first_replay_is_kept_and_equals_eager():
    model = activate_temporal(HCDPModel(micro_config(temporal=True))).eval()
    reference = TorchBackend(copy.deepcopy(model), 3, "cpu")
    captured = _captured_on_cpu(model, 3, works=True)
    clip = random_clip(model, 4)
    want_state = reference.init_state()
    for t in range(4):
        got = captured(clip[:, t], captured.state)
        want, want_state = reference.step(clip[:, t], want_state)
        for g, w in zip(got, want):
            torch.testing.assert_close(g, w, atol=1e-6, rtol=0)
    assert captured.graph is not None and captured.replay_error == 0.0


def test_a_wrong_first_replay_is_refused_and_the_rings_are_emptied():
    model = activate_temporal(HCDPModel(micro_config(temporal=True))).eval()
    captured = _captured_on_cpu(model, 3, works=False)
    with torch.inference_mode():
        for tensor in captured.state:
            tensor.fill_(5)  # whatever was there must not survive the refusal
    with pytest.raises(CudaGraphMismatch, match="the graph is not used"):
        captured(random_clip(model, 1)[:, 0], captured.state)
    assert captured.graph is None and captured.outputs is None
    empty = [t.clone() for t in captured.state]
    reset_ring(empty)
    for got, want in zip(captured.state, empty):
        assert torch.equal(got, want)


def test_the_default_backend_falls_back_to_eager_on_a_wrong_replay(caplog):
    model = activate_temporal(HCDPModel(micro_config(temporal=True))).eval()
    reference = TorchBackend(copy.deepcopy(model), 3, "cpu")
    backend = TorchBackend(model, 3, "cpu", cuda_graph=False)
    backend._captured = _captured_on_cpu(backend.module.model, 3, works=False)
    backend._fallback = True  # as cuda_graph=None on a CUDA device
    clip = random_clip(model, 4)
    assert_backends_agree(backend, reference, clip)
    assert backend.name == "torch" and backend._captured is None
    assert "first replay disagreed with eager" in caplog.text
    required = TorchBackend(copy.deepcopy(model), 3, "cpu", cuda_graph=False)
    required._captured = _captured_on_cpu(required.module.model, 3, works=False)
    with pytest.raises(CudaGraphMismatch):  # cuda_graph=True: no fallback, the error surfaces
        required.step(clip[:, 0], required.init_state())
