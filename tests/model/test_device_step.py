"""The streaming step never touches the host (issue 19.1).

Run on the `meta` device, every tensor any op creates or reads stays there, nothing builds a
tensor from host data (torch.tensor, new_tensor, ...) and nothing reads one back (.item(), .cpu(),
...). That is what a CUDA graph capture needs; the CUDA tests at the end run where a GPU exists.
"""
from __future__ import annotations

import copy

from hcdp_model.backends.cuda_graph import reset_ring, static_ring
from hcdp_model.backends.step import ExportStep, InPlaceStreamingStep, StreamingStep
from hcdp_model.backends.torch_eager import _RingOutputs, TorchBackend
from hcdp_model.model import HCDPModel
import pytest
from tests.model.helpers import activate_temporal, assert_backends_agree, micro_config, random_clip
import torch
from torch.overrides import TorchFunctionMode
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

# Python-level calls that move data between host and device or wait for the device.
HOST_CALLS = {"tensor", "new_tensor", "as_tensor", "asarray", "from_numpy", "item", "tolist",
              "numpy", "cpu", "__bool__", "__int__", "__float__", "__index__"}
# aten ops that read a value back (a host sync) or have data-dependent output shapes.
SYNC_OPS = ("_local_scalar_dense", "nonzero", "is_nonzero", "equal", "masked_select", "unique")


class HostTraffic(TorchFunctionMode):
    """Records host calls and every tensor a torch function returns off `device`."""

    def __init__(self, device: str) -> None:
        super().__init__()
        self.device = device
        self.found: list[str] = []

    def __torch_function__(self, func, types, args=(), kwargs=None):
        name = getattr(func, "__name__", str(func))
        if name in HOST_CALLS:
            self.found.append(f"host call {name}")
        out = func(*args, **(kwargs or {}))
        for t in tree_flatten(out)[0]:
            if isinstance(t, torch.Tensor) and t.device.type != self.device:
                self.found.append(f"{name} returned a tensor on {t.device}")
        return out


class SyncOps(TorchDispatchMode):
    """Record every aten op that reads a value back or has a data-dependent shape.

    Also every tensor in or out of an op that is off `device`.
    """

    def __init__(self, device: str) -> None:
        super().__init__()
        self.device = device
        self.found: list[str] = []
        self.ops = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.ops += 1
        name = str(func)
        if any(f"aten.{op}." in name for op in SYNC_OPS):
            self.found.append(f"sync op {name}")
        out = func(*args, **(kwargs or {}))
        for t in tree_flatten((args, kwargs, out))[0]:
            if isinstance(t, torch.Tensor) and t.device.type != self.device:
                self.found.append(f"{name} on {t.device}")
        return out


def host_traffic(fn, device: str = "meta") -> tuple[list[str], int]:
    functions, dispatch = HostTraffic(device), SyncOps(device)
    with torch.inference_mode(), functions, dispatch:
        fn()
    return functions.found + dispatch.found, dispatch.ops


@pytest.mark.parametrize("step_class", [InPlaceStreamingStep, StreamingStep, ExportStep])
def test_streaming_steps_create_no_host_tensor_and_never_sync(step_class):
    model = HCDPModel(micro_config(temporal=True)).eval().to("meta")
    step = step_class(model, 4)
    with torch.inference_mode():
        state = step.init_state(1, "meta")
    frame = torch.empty(1, 3, model.cfg.resolution, model.cfg.resolution, device="meta")

    def frames():
        nonlocal state
        for _ in range(5):  # past a full window: the ring wraps, the functional cache rolls
            depth, normal, mask_logits, *state = step(frame, *state)
        assert depth.device.type == "meta" and len(state) == 12

    found, ops = host_traffic(frames)
    assert ops > 100, f"expected the whole step to be recorded, saw {ops} ops"
    assert found == [], f"expected no host tensor and no sync in the step, found {found[:5]}"


def test_the_host_traffic_check_sees_host_tensors_reads_and_syncs():
    x = torch.empty(3, device="meta")
    found, _ = host_traffic(lambda: x + x.new_tensor(1.0))
    assert "host call new_tensor" in found
    found, _ = host_traffic(lambda: (x * 2, torch.zeros(3)))
    assert "zeros returned a tensor on cpu" in found
    y = torch.ones(3)
    found, _ = host_traffic(lambda: (y.sum().item(), y.nonzero()), device="cpu")
    assert "host call item" in found and "sync op aten.nonzero.default" in found


def test_static_rings_keep_their_storage_when_reset():
    model = activate_temporal(HCDPModel(micro_config(temporal=True))).eval()
    step = InPlaceStreamingStep(model, 3)
    ring = static_ring(step, torch.device("cpu"), torch.float32)
    pointers = [t.data_ptr() for t in ring]
    with torch.inference_mode():
        for t in range(4):
            step(random_clip(model, 1, seed=t)[:, 0], *ring)
        assert int(ring[2].max()) == 2 and bool(ring[0].abs().sum() > 0)
        reset_ring(ring)
    assert [t.data_ptr() for t in ring] == pointers
    assert all(bool((t == (-1 if i % 3 == 2 else 0)).all()) for i, t in enumerate(ring))


def test_compiled_ring_step_mutates_only_static_inputs_so_cuda_graphs_are_not_skipped():
    """Check torch.compile's CUDA graph trees do not skip the graph: the rings must be static.

    torch.compile's CUDA graph trees skip a graph for "mutated inputs" unless every mutated input
    is static (cudagraph_utils.check_for_mutation): the rings must be marked static.
    """
    model = activate_temporal(HCDPModel(micro_config(temporal=True))).eval()
    step = InPlaceStreamingStep(model, 3)
    seen: dict[str, list] = {}

    def record(gm, example_inputs):
        placeholders = [n for n in gm.graph.nodes if n.op == "placeholder"]
        seen["mutated"] = [getattr(example, "_dynamo_static_input_type", None)
                           for node, example in zip(placeholders, example_inputs)
                           if any(str(getattr(u.target, "__name__", u.target)).endswith("_")
                                  and not str(getattr(u.target, "__name__", u.target))
                                  .startswith("__") for u in node.users)]
        return gm.forward

    torch._dynamo.reset()
    ring = static_ring(step, torch.device("cpu"), torch.float32)
    compiled = torch.compile(_RingOutputs(step), backend=record, fullgraph=True)
    eager_ring = step.init_state()
    clip = random_clip(model, 5)
    with torch.inference_mode():
        for t in range(5):
            got = compiled(clip[:, t], *ring)
            want = step(clip[:, t], *eager_ring)[:3]
            for g, w in zip(got, want):
                torch.testing.assert_close(g, w, atol=1e-5, rtol=0)
    assert len(seen["mutated"]) == 12, f"expected the 12 ring tensors mutated, got {seen}"
    assert all(kind is not None for kind in seen["mutated"]), (
        f"expected every mutated input marked static, got {seen['mutated']}")
    torch._dynamo.reset()


def test_cuda_graph_mode_is_refused_off_cuda():
    with pytest.raises(ValueError, match="cuda_graph=True needs a CUDA device, got cpu"):
        TorchBackend(HCDPModel(micro_config(temporal=True)), 4, "cpu", cuda_graph=True)


cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


@cuda
@pytest.mark.parametrize("use_compile", [False, True])
def test_cuda_graph_backends_equal_the_offline_causal_forward(use_compile):
    model = activate_temporal(HCDPModel(micro_config(temporal=True))).eval()
    window, frames = 3, 8
    clip = random_clip(model, frames)
    with torch.no_grad():
        offline = model(clip, window=window)
    backend = TorchBackend(model, window, "cuda", "fp32", compile=use_compile, cuda_graph=True)
    for round_ in range(2):  # a reset (init_state) in the middle of a stream
        state = backend.init_state()
        for t in range(frames):
            (depth, normal, mask_logits), state = backend.step(clip[:, t].cuda(), state)
            for got, key in ((depth, "depth"), (normal, "normal"), (mask_logits, "mask_logits")):
                torch.testing.assert_close(got.cpu(), offline[key][:, t], atol=2e-4, rtol=0,
                                           msg=f"{key} frame {t} round {round_}")


@cuda
def test_predictor_on_the_cuda_graph_backend_equals_the_cpu_predictor():
    import numpy as np

    from hcdp_model.predictor import StreamingPredictor

    model = activate_temporal(HCDPModel(micro_config(temporal=True))).eval()
    cpu = StreamingPredictor(TorchBackend(model, 3, "cpu"))
    gpu = StreamingPredictor(TorchBackend(copy.deepcopy(model), 3, "cuda", cuda_graph=True))
    rng = np.random.default_rng(0)
    for t in range(6):
        image = rng.integers(0, 256, (48, 64, 3), dtype=np.uint8)
        want, got = cpu.step(image, 0.03 * t, "c", "bgr8"), gpu.step(image, 0.03 * t, "c", "bgr8")
        for key in ("depth", "normals", "mask"):
            np.testing.assert_allclose(getattr(got, key), getattr(want, key), atol=5e-4, rtol=0)
        assert got.window_fill == want.window_fill


def test_default_cuda_graphs_fall_back_to_eager_when_the_capture_fails(caplog):
    """Check a failed CUDA capture of the default backend leaves a working, warned-about eager one.

    On CUDA the default backend captures the step; a capture that fails (an op that cannot be
    captured) must leave a working eager backend, warned about, with the same outputs.
    """
    model = activate_temporal(HCDPModel(micro_config(temporal=True))).eval()
    reference = TorchBackend(copy.deepcopy(model), 3, "cpu")
    backend = TorchBackend(model, 3, "cpu", cuda_graph=False)

    class FailingCapture:
        graph = None

        def reset(self):
            return reference.module.init_state()

        def __call__(self, frame, state):
            for tensor in state:  # what a warm-up does before the capture fails
                tensor.fill_(7)
            raise RuntimeError("operation not permitted when stream is capturing")

    backend._captured, backend._fallback = FailingCapture(), True
    clip = random_clip(model, 4)
    assert_backends_agree(backend, reference, clip)
    assert backend.name == "torch" and backend._captured is None
    assert "CUDA graph capture of the streaming step failed" in caplog.text
    required = TorchBackend(copy.deepcopy(model), 3, "cpu", cuda_graph=False)
    required._captured = FailingCapture()  # cuda_graph=True: no fallback, the error surfaces
    with pytest.raises(RuntimeError, match="stream is capturing"):
        required.step(clip[:, 0], required.init_state())
