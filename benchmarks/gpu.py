"""GPU runtime table, per preset and precision.

The single-frame and streaming step (eager, torch.compile, CUDA graphs; ONNX Runtime CUDA and
TensorRT when installed), the node path at 640×480 and 1280×720, peak memory, and training
throughput per stage.

    python benchmarks/gpu.py [--presets small base large] [--precisions fp16 bf16 fp32]
                             [--window 16] [--rounds 50] [--skip-compile] [--skip-train] [--json]

Needs a CUDA GPU (it refuses without one). Random weights at each preset's resolution (518² for
small/base/large): the timings do not depend on the weights. Step times are CUDA-event medians
over --rounds frames after the caches hold a full window; "node path" is
`StreamingPredictor.step` (uint8 frame in, depth/normals/mask on the host out) on the CUDA-graph
backend; "train" is images/s of one optimizer step (forward, loss, backward, AdamW) of stage 0, 1
and 2 on random batches at --train-size with bf16 autocast. A few minutes on an H100 for
small+base at fp16 with --skip-compile; torch.compile adds about a minute per row.
"""
from __future__ import annotations

import argparse
from collections.abc import Callable
import copy
from dataclasses import dataclass, field
import importlib.util
import json
from pathlib import Path
import statistics
import sys
import tempfile
import time

from hcdp_model.backends.base import DEFAULT_WINDOW
from hcdp_model.backends.step import StreamingStep
from hcdp_model.backends.torch_eager import TorchBackend
from hcdp_model.config import preset
from hcdp_model.model import HCDPModel
from hcdp_model.predictor import StreamingPredictor
import numpy as np
import torch

NODE_SIZES = ((480, 640), (720, 1280))
STEP_MODES = ("eager", "compile", "cudagraph", "compile+cudagraph")


class NoCuda(SystemExit):
    pass


def require_cuda(available: bool | None = None) -> None:
    """Refuse (exit 2 with the reason) on a machine without a usable CUDA device."""
    available = torch.cuda.is_available() if available is None else available
    if not available:
        raise NoCuda("benchmarks/gpu.py: needs a CUDA GPU, found none (torch.cuda.is_available() "
                     f"is False; torch {torch.__version__}, CUDA build {torch.version.cuda}); run "
                     "the CPU benchmarks instead: benchmarks/streaming.py, backends.py, "
                     "node_overhead.py")


@dataclass
class Row:
    preset: str
    precision: str
    what: str
    ms: float | None = None          # median per frame / per step
    p90_ms: float | None = None
    images_per_s: float | None = None
    peak_mb: float | None = None
    note: str = ""
    extra: dict = field(default_factory=dict)


def summarise(times_ms: list[float]) -> tuple[float, float]:
    """Median and 90th percentile (nearest rank) of per-call times."""
    if not times_ms:
        raise ValueError("expected at least one timing, got none")
    ordered = sorted(times_ms)
    rank = max(0, int(np.ceil(0.9 * len(ordered))) - 1)
    return statistics.median(ordered), ordered[rank]


def timer(device: torch.device) -> Callable[[Callable[[], object]], float]:
    """Milliseconds of one call.

    CUDA events on a GPU (the device time, not the launch), else wall time.
    """
    if device.type == "cuda":
        def cuda_ms(fn: Callable[[], object]) -> float:
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            fn()
            end.record()
            end.synchronize()
            return start.elapsed_time(end)
        return cuda_ms

    def wall_ms(fn: Callable[[], object]) -> float:
        start = time.perf_counter()
        fn()
        return (time.perf_counter() - start) * 1e3
    return wall_ms


def plan(presets: list[str], precisions: list[str], skip_compile: bool,
         installed: Callable[[str], bool]) -> list[tuple[str, str, str]]:
    """(preset, precision, measurement) in the order they run; only what this machine can run."""
    rows = []
    for name in presets:
        for precision in precisions:
            rows.append((name, precision, "single eager"))
            for mode in STEP_MODES:
                if skip_compile and "compile" in mode:
                    continue
                rows.append((name, precision, f"stream {mode}"))
            if installed("onnxruntime") and precision in ("fp32", "fp16"):
                rows.append((name, precision, "stream onnxruntime-cuda"))
            if installed("torch_tensorrt") and precision in ("fp32", "fp16"):
                rows.append((name, precision, "stream tensorrt"))
            rows.extend((name, precision, f"node {w}x{h}") for h, w in NODE_SIZES)
    return rows


def format_table(rows: list[Row]) -> str:
    head = f"{'preset':<7s} {'prec':<5s} {'measurement':<28s} {'median ms':>10s} {'p90 ms':>8s} " \
           f"{'img/s':>8s} {'peak MB':>8s}  note"
    lines = [head, "-" * len(head)]
    for r in rows:
        def cell(v, width, fmt):
            return f"{'-':>{width}s}" if v is None else f"{v:{width}{fmt}}"
        lines.append(f"{r.preset:<7s} {r.precision:<5s} {r.what:<28s} {cell(r.ms, 10, '.2f')} "
                     f"{cell(r.p90_ms, 8, '.2f')} {cell(r.images_per_s, 8, '.0f')} "
                     f"{cell(r.peak_mb, 8, '.0f')}  {r.note}")
    return "\n".join(lines)


def ratios(rows: list[Row]) -> dict[str, float]:
    """Ratio streaming ÷ single-frame per preset, precision and streaming mode."""
    single = {(r.preset, r.precision): r.ms for r in rows if r.what == "single eager" and r.ms}
    out = {}
    for r in rows:
        base = single.get((r.preset, r.precision))
        if r.what.startswith("stream ") and r.ms and base:
            out[f"{r.preset} {r.precision} {r.what.removeprefix('stream ')}"] = r.ms / base
    return out


def models(name: str, window: int) -> tuple[HCDPModel, HCDPModel]:
    """Build a single-frame model and the same weights with causal temporal blocks inserted."""
    torch.manual_seed(0)
    single = HCDPModel(preset(name)).eval()
    temporal = copy.deepcopy(single)
    temporal.insert_temporal_blocks("causal")
    return single, temporal


def _peak_mb(device: torch.device) -> float | None:
    return torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else None


def _reset_peak(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)


def time_step(step: Callable[[torch.Tensor, tuple], tuple], state: tuple, frames: torch.Tensor,
              warmup: int, rounds: int, device: torch.device) -> tuple[list[float], tuple]:
    """Per-frame ms of `step(frame, state) -> (outputs, state)` after `warmup` frames."""
    measure = timer(device)
    times = []
    for i in range(warmup + rounds):
        frame = frames[i % len(frames)]
        box = {}

        def once():
            box["out"] = step(frame, state)
        ms = measure(once)
        state = box["out"][1]
        if i >= warmup:
            times.append(ms)
    return times, state


def measure_steps(name: str, precision: str, window: int, rounds: int, device: torch.device,
                  modes: list[str]) -> list[Row]:
    """Single-frame eager and the streaming step in each torch mode (see TorchBackend)."""
    dtype = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}[precision]
    single, temporal = models(name, window)
    s = single.cfg.resolution
    frames = torch.randn(8, 1, 3, s, s, device=device, dtype=dtype)
    rows = []
    _reset_peak(device)
    one = StreamingStep(single.to(device, dtype), 1)
    with torch.inference_mode():
        times, _ = time_step(lambda f, st: (one(f), st), (), frames, 3, rounds, device)
    rows.append(Row(name, precision, "single eager", *summarise(times), peak_mb=_peak_mb(device)))
    for mode in modes:
        _reset_peak(device)
        backend = TorchBackend(copy.deepcopy(temporal), window, device, precision,
                               compile="compile" in mode, cuda_graph="cudagraph" in mode)
        started = time.perf_counter()
        times, _ = time_step(backend.step, backend.init_state(), frames, window + 2, rounds,
                             device)
        build_s = time.perf_counter() - started - sum(times) / 1e3
        rows.append(Row(name, precision, f"stream {mode}", *summarise(times),
                        peak_mb=_peak_mb(device), note=f"warm-up incl. build {build_s:.1f} s"))
    return rows


def measure_node(name: str, precision: str, window: int, rounds: int, device: torch.device,
                 cuda_graph: bool) -> list[Row]:
    """StreamingPredictor.step wall time (uint8 in, host maps out) at each NODE_SIZES."""
    _, temporal = models(name, window)
    rows = []
    rng = np.random.default_rng(0)
    for h, w in NODE_SIZES:
        _reset_peak(device)
        backend = TorchBackend(copy.deepcopy(temporal), window, device, precision,
                               cuda_graph=cuda_graph)
        predictor = StreamingPredictor(backend)
        images = [rng.integers(0, 256, (h, w, 3), dtype=np.uint8) for _ in range(4)]
        times = []
        for i in range(window + 2 + rounds):
            start = time.perf_counter()
            predictor.step(images[i % 4], 0.033 * i, "camera", "bgr8")
            if i >= window + 2:
                times.append((time.perf_counter() - start) * 1e3)
        rows.append(Row(name, precision, f"node {w}x{h}", *summarise(times),
                        peak_mb=_peak_mb(device),
                        note="cudagraph backend" if cuda_graph else "eager backend"))
    return rows


ARTEFACTS = {"stream onnxruntime-cuda": ("onnx", ".onnx"), "stream tensorrt": ("tensorrt", ".ep")}


def measure_artefact(name: str, precision: str, what: str, window: int, rounds: int,
                     device: torch.device) -> Row:
    """Export the streaming step (`hcdp export`'s path, verified against eager) and time it."""
    from hcdp_model.backends.build import ExportSpec, export_artefact, open_artefact
    from hcdp_model.checkpoint import save_checkpoint

    fmt, suffix = ARTEFACTS[what]
    _, temporal = models(name, window)
    with tempfile.TemporaryDirectory() as folder:
        checkpoint = save_checkpoint(temporal, Path(folder) / name)
        path = Path(folder) / f"step_{precision}{suffix}"
        started = time.perf_counter()
        try:
            export_artefact(checkpoint, path, ExportSpec(fmt, precision, window,
                                                         device=str(device)))
            backend = open_artefact(path, device)
        except Exception as err:  # noqa: BLE001 - a runtime that cannot build is a table entry
            return Row(name, precision, what, note=f"not built: {type(err).__name__}: "
                       f"{str(err)[:120]}")
        build_s = time.perf_counter() - started
        s = temporal.cfg.resolution
        frames = torch.randn(8, 1, 3, s, s, device=device, dtype=backend.input_dtype)
        _reset_peak(device)
        with torch.inference_mode():
            times, _ = time_step(backend.step, backend.init_state(), frames, window + 2, rounds,
                                 device)
    return Row(name, precision, what, *summarise(times), peak_mb=_peak_mb(device),
               note=f"export + build {build_s:.0f} s; {backend.describe()}")


def train_batch(stage: int, batch: int, frames: int, size: int, device: torch.device) -> dict:
    """Return a random labelled batch shaped like the datasets' (training/data/datasets.py)."""
    g = torch.Generator().manual_seed(stage)
    lead = (batch,) if stage < 2 else (batch, frames)

    def rand(*shape):
        return torch.rand(*lead, *shape, generator=g)
    normal = torch.nn.functional.normalize(rand(3, size, size) - 0.5, dim=-3)
    out = {"image": rand(3, size, size), "depth": 1 + rand(1, size, size),
           "normal": normal, "mask": (rand(1, size, size) > 0.3).float(),
           "canonical": rand(3, size, size) * 2 - 1,
           "flow_fwd": rand(2, size, size) - 0.5, "flow_bwd": rand(2, size, size) - 0.5,
           "K": torch.tensor([[size, 0, size / 2], [0, size, size / 2], [0, 0, 1.0]]).expand(
               *lead, 3, 3).contiguous()}
    if stage == 2:
        out["stride"] = torch.ones(batch, dtype=torch.long)
        out["frame_index"] = torch.arange(frames).expand(batch, frames).contiguous()
    return {k: v.to(device) for k, v in out.items()}


def measure_training(name: str, stage: int, batch: int, frames: int, size: int, steps: int,
                     device: torch.device) -> Row:
    """images/s of full optimizer steps of `stage` on random batches (bf16 autocast on CUDA)."""
    from hcdp_training.config import TrainConfig
    from hcdp_training.stages import build_model, make_task

    cfg = TrainConfig()
    cfg.stage = stage
    cfg.model.preset = name
    cfg.data.frames = frames if stage == 2 else 1
    model = build_model(cfg).to(device).train()
    task = make_task(model, cfg)
    params = [p for p in task.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=1e-5)
    data = train_batch(stage, batch, frames, size, device)
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda")
    _reset_peak(device)
    measure = timer(device)

    def one():
        optimizer.zero_grad(set_to_none=True)
        with autocast:
            loss = task(data)[0]
        loss.backward()
        optimizer.step()
    times = [measure(one) for _ in range(steps + 2)][2:]
    median, p90 = summarise(times)
    images = batch * (frames if stage == 2 else 1)
    return Row(name, "bf16" if device.type == "cuda" else "fp32", f"train stage {stage}",
               median, p90, images_per_s=images / median * 1e3, peak_mb=_peak_mb(device),
               note=f"batch {batch}{f'x{frames} frames' if stage == 2 else ''} at {size}²")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--presets", nargs="+", default=["small", "base", "large"])
    parser.add_argument("--precisions", nargs="+", default=["fp16", "bf16", "fp32"],
                        choices=["fp16", "bf16", "fp32"])
    parser.add_argument("--window", type=int, default=DEFAULT_WINDOW)
    parser.add_argument("--rounds", type=int, default=50)
    parser.add_argument("--skip-compile", action="store_true", help="no torch.compile rows")
    parser.add_argument("--skip-train", action="store_true")
    parser.add_argument("--train-size", type=int, default=224)
    parser.add_argument("--train-batch", type=int, default=16)
    parser.add_argument("--train-frames", type=int, default=4, help="stage-2 clip length")
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    require_cuda(device.type == "cuda" and torch.cuda.is_available())
    torch.backends.cuda.matmul.allow_tf32 = True
    torch.backends.cudnn.allow_tf32 = True

    def installed(module: str) -> bool:
        return importlib.util.find_spec(module) is not None

    rows: list[Row] = []
    todo = plan(args.presets, args.precisions, args.skip_compile, installed)
    for name in args.presets:
        for precision in args.precisions:
            wanted = [m for p, q, m in todo if (p, q) == (name, precision)]
            modes = [m.removeprefix("stream ") for m in wanted
                     if m.removeprefix("stream ") in STEP_MODES]
            rows += measure_steps(name, precision, args.window, args.rounds, device, modes)
            for what in wanted:
                if what in ARTEFACTS:
                    rows.append(measure_artefact(name, precision, what, args.window, args.rounds,
                                                 device))
            rows += measure_node(name, precision, args.window, args.rounds, device, True)
            print(format_table(rows[-(len(modes) + 3):]), file=sys.stderr)
    if not args.skip_train:
        for name in args.presets:
            for stage in (0, 1, 2):
                rows.append(measure_training(name, stage, args.train_batch, args.train_frames,
                                             args.train_size, 10, device))
    gpu = torch.cuda.get_device_name(device)
    if args.json:
        print(json.dumps({"gpu": gpu, "torch": torch.__version__, "window": args.window,
                          "rows": [r.__dict__ for r in rows], "ratios": ratios(rows)}, indent=2))
        return 0
    print(f"{gpu}, torch {torch.__version__}, window {args.window}, {args.rounds} frames per row")
    print(format_table(rows))
    for key, value in ratios(rows).items():
        print(f"streaming ÷ single-frame {key}: {value:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
